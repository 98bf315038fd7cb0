"""SD3-nano: a genuine ``StableDiffusion3Pipeline`` sized for a 2-core CPU, trained on the Shapes world.

Sizes (see FACTS.md for the speed budget): 32×32 RGB images; a two-level ``AutoencoderKL`` (16 and 32
channels, factor 2) giving 16×16×4 latents; an ``SD3Transformer2DModel`` of 6 blocks, width 128 (4 heads × 32),
SD3.5-style dual attention in blocks 0–1 and rms-norm on q/k, patch 2 (64 image tokens); two CLIP text encoders
(width 48, projections 64) and a T5 encoder (width 128); tokenizers built in memory over the Shapes vocabulary.
CLIP and T5 both use 16 tokens, so every prompt is 32 text tokens.

The trained teacher is shipped in ``flashdistill/assets/sd3-nano`` (``teacher_path()``); it is produced by
``flashdistill train-teacher --config configs/sd3_nano_teacher.yaml``.
"""

from __future__ import annotations

import numpy as np

from ..assets_paths import ASSETS, teacher_path
from ..models.tiny import SD3Spec, build_sd3_pipeline
from . import world

__all__ = ["MAX_SEQUENCE_LENGTH", "RESOLUTION", "shapes_vocabulary", "build_nano_pipeline",
           "teacher_path", "ASSETS"]

MAX_SEQUENCE_LENGTH = 16  # T5 tokens; the student folders record it for stock diffusers users
RESOLUTION = world.IMAGE_SIZE


def shapes_vocabulary(n_scenes: int = 4000, seed: int = 0) -> tuple[str, ...]:
    """Every word the caption grammar writes (both splits), sorted. Deterministic."""
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    for split in world.SPLITS:
        for _ in range(n_scenes):
            _, spec = world.sample_scene(rng, split=split)
            for caption in world.phrasings(spec):
                words.update(caption.lower().split())
    return tuple(sorted(words))


def nano_spec() -> SD3Spec:
    return SD3Spec(
        image_size=RESOLUTION, vae_channels=(16, 32), vae_layers=1, latent_channels=4,
        layers=6, heads=4, head_dim=32, dual_attention_layers=(0, 1), qk_norm="rms_norm", patch_size=2,
        clip_dim=48, clip_layers=2, clip_proj=64, clip_max_length=16, t5_dim=128, t5_layers=2, t5_ff=256,
        scaling_factor=1.0, shift_factor=0.0, scheduler_shift=3.0, words=shapes_vocabulary(),
    )


def build_nano_pipeline(seed: int = 0):
    """A freshly initialised SD3-nano pipeline (random weights)."""
    return build_sd3_pipeline(nano_spec(), seed=seed)
