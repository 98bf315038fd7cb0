"""Where along the noise scale a model loses the prompt: ShapesEval of its ODE started from *real* images.

For each start ``t0``, ground-truth Shapes images of the evaluation prompts are encoded, noised to ``t0``
(``x = (1 − t0)·z + t0·ε``) and integrated to 0 with the model's CFG Euler solver (``steps`` uniform steps over
``[t0, 0]``). At small ``t0`` the picture is still there and a sound denoiser keeps it (score near the ground
truth's ~1.0); at ``t0 = 1`` this is plain generation. The start at which the score collapses names the noise
range the model has not learned (layout and shape identity are decided at high noise, outlines at low noise),
which is what to train harder. Used by ``benchmarks/teacher_report.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["noised_start_scores"]


@torch.no_grad()
def noised_start_scores(setup, starts: Sequence[float] = (0.3, 0.5, 0.7, 0.9, 1.0), n_per_category: int = 8,
                        steps: int = 20, seed: int = 0) -> dict[float, float]:
    """``{t0: ShapesEval overall}`` on the train split for a loaded ``SamplingSetup`` (see module docstring)."""
    from ..flow import interpolate
    from ..models.backbones import adapter_for, denoiser_of, text_encoder_for
    from ..models.vae import LatentCodec, from_uint8, to_uint8
    from ..sampling import CFG, euler_solve
    from ..shapes import eval_prompts
    from ..shapes.render import render
    from .shapes_eval import ShapesEval

    for t0 in starts:
        if not 0 < t0 <= 1:
            raise ValueError(f"noised_start_scores: start {t0} must lie in (0, 1]")
    pipe = setup.pipe
    device = denoiser_of(pipe).device
    prompts = eval_prompts(n_per_category, seed=seed, split="train")
    rng = np.random.default_rng(seed)
    real = np.stack([render(spec, rng, setup.resolution) for _, spec in prompts])
    codec = LatentCodec(pipe.vae)
    text = text_encoder_for(pipe, setup.max_sequence_length)
    model = CFG(adapter_for(pipe), text.null(), setup.guidance_scale)
    cond = text.encode([p for p, _ in prompts])
    z = codec.encode(from_uint8(real).to(device))
    from ..seeds import sample_noise

    # evaluation noise of (seed, k): never a training sample's (flashdistill.seeds)
    noise = torch.stack([sample_noise("eval", seed, k, z.shape[1:]) for k in range(z.shape[0])]).to(device, z.dtype)
    judge, specs, out = ShapesEval(), [s for _, s in prompts], {}
    for t0 in starts:
        x = interpolate(z, noise, torch.full((z.shape[0],), float(t0), device=device, dtype=z.dtype))
        x0 = euler_solve(model, x, torch.linspace(float(t0), 0.0, steps + 1), cond)
        out[float(t0)] = float(judge.score(to_uint8(codec.decode(x0)), specs)["overall"])
    return out
