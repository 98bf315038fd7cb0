"""The shipped variance-preserving teachers (UNet-nano, PixArt-nano): their stock diffusers pipeline loads them
offline, and their samples show the Shapes world and follow their prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.shapes.vp_nano import vp_teacher_path

pytestmark = pytest.mark.slow

SHIPPED = ["unet", "pixart"]
MARGIN = 0.2  # ShapesEval with the true prompts minus with shuffled prompts, at least (as for SD3-nano)


@pytest.mark.parametrize("backbone", SHIPPED)
def test_stock_pipeline_loads_and_runs(backbone):
    from diffusers import DiffusionPipeline

    folder = vp_teacher_path(backbone)
    settings = json.loads((folder / "flashdistill.json").read_text())
    pipe = DiffusionPipeline.from_pretrained(folder)
    assert type(pipe).__name__ == {"unet": "StableDiffusionPipeline", "pixart": "PixArtAlphaPipeline"}[backbone]
    pipe.set_progress_bar_config(disable=True)
    extra = {"clean_caption": False, "use_resolution_binning": False} if backbone == "pixart" else {}
    out = pipe(["a red circle"], num_inference_steps=4, height=32, width=32, output_type="np",
               guidance_scale=settings["guidance_scale"], generator=torch.Generator().manual_seed(0), **extra).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all() and out.std() > 0.02


@pytest.mark.parametrize("backbone", SHIPPED)
def test_vp_teacher_learned_the_world(backbone):
    """Against the same pipeline with an untrained denoiser: far closer to real Shapes; and its images follow their
    own prompts: ShapesEval well above what the same images score against shuffled prompts."""
    from flashdistill.eval.fd import FDJudge, reference_images
    from flashdistill.eval.shapes_eval import ShapesEval
    from flashdistill.models.backbones import KINDS, denoiser_of
    from flashdistill.pipelines.folders import load_pipeline
    from flashdistill.pipelines.generate import generate_images, load_setup
    from flashdistill.shapes import eval_prompts
    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline

    folder = vp_teacher_path(backbone)
    prompts = eval_prompts(8, seed=0)
    texts, specs = [p for p, _ in prompts], [s for _, s in prompts]
    images, _ = generate_images(load_setup(folder, steps=25), texts)  # the teacher's own CFG scale
    pipe = load_pipeline(folder, kinds=tuple(KINDS.values()))
    conf = denoiser_of(pipe).config  # a fresh denoiser of the shipped one's size
    size = {"pixart_size": (conf.num_layers, conf.num_attention_heads)} if backbone == "pixart" else {}
    fresh = denoiser_of(build_vp_nano_pipeline(backbone, seed=0, **size))
    denoiser_of(pipe).load_state_dict(fresh.state_dict())
    untrained, _ = generate_images(load_setup(folder, steps=25, pipe=pipe), texts)
    ref, fd = reference_images(256, seed=1234), FDJudge()
    fd_t, fd_u = fd.score(images, ref)["fd"], fd.score(untrained, ref)["fd"]
    judge = ShapesEval()
    own = judge.score(images, specs)["overall"]
    perm = np.random.default_rng(0).permutation(len(specs))
    shuffled = judge.score(images, [specs[i] for i in perm])["overall"]
    print(f"{backbone}-nano: FD trained {fd_t:.1f} vs untrained {fd_u:.1f}; ShapesEval {own:.3f} with its prompts "
          f"vs {shuffled:.3f} shuffled")
    assert fd_t <= 0.25 * fd_u
    assert own >= shuffled + MARGIN
