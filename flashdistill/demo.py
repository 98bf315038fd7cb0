"""``flashdistill demo``: the end-to-end job on the embedded default.

Until the SD3-nano teacher and the distillation recipes land, the demo builds a tiny SD3 pipeline offline, samples
it through our own adapter + Euler sampler + CFG wrapper, checks that against stock diffusers, and writes a grid.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_args", "run"]


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run folder for the report and pictures")


def run(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from .models.sd3 import SD3Adapter, SD3TextEncoder
    from .models.tiny import tiny_sd3_pipeline
    from .models.vae import LatentCodec, to_uint8
    from .sampling import CFG, euler_solve

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = tiny_sd3_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a red circle", "two blue squares", "a green triangle above a yellow circle"]
    text = SD3TextEncoder(pipe, max_sequence_length=16)
    model = CFG(SD3Adapter(pipe.transformer), text.null(), scale=4.5)
    noise = torch.randn(len(prompts), 4, 8, 8, generator=torch.Generator().manual_seed(0))
    rows = []
    for steps in (2, 4, 8, 28):
        grid = torch.linspace(1, 0, steps + 1)
        t0 = time.perf_counter()
        ours = euler_solve(model, noise, grid, text.encode(prompts))
        dt = time.perf_counter() - t0
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config, shift=1.0)
        ref = pipe(prompts, latents=noise.clone(), sigmas=grid[:-1].tolist(), guidance_scale=4.5,
                   output_type="latent", height=16, width=16, max_sequence_length=16).images
        diff = (ours - ref).abs().max().item()
        rows.append((steps, diff, dt))
        images = to_uint8(LatentCodec(pipe.vae).decode(ours))
        Image.fromarray(np.concatenate(list(images), axis=1)).resize((48 * len(prompts), 48), 0).save(
            out / f"tiny_{steps}steps.png")
    print("tiny random SD3 pipeline (offline): our sampler vs stock StableDiffusion3Pipeline")
    print("| steps | max |ours - diffusers| | seconds |")
    print("|---|---|---|")
    for steps, diff, dt in rows:
        print(f"| {steps} | {diff:.2e} | {dt:.3f} |")
    print(f"pictures in {out}/")
    return 0
