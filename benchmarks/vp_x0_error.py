"""How well a variance-preserving teacher knows the image at each noise level: the RMS error of its x0 estimate.

    .venv/bin/python benchmarks/vp_x0_error.py FOLDER [FOLDER ...] [--n 64] [--indices 999,900,800,700,600,400,200]

For each teacher folder (UNet-nano, PixArt-nano or an exported checkpoint): ``--n`` real Shapes scenes (train split,
seed 99) are encoded, noised to each DDPM index with one fixed noise, and the teacher's output (with the true
prompt) is turned into its x0 estimate the way its scheduler does (ε: (x − √(1-ᾱ)·ε̂)/√ᾱ; v: √ᾱ·x − √(1-ᾱ)·v̂).
Predicting the all-zero latent scores the latents' RMS (printed as "zero"): an estimate above it is worse than none.
The SNR of each index is printed per schedule, since an index means a different noise level in each.
"""

from __future__ import annotations

import argparse
import sys

import torch


def x0_errors(folder: str, n: int, indices: list[int]) -> tuple[str, float, list[tuple[int, float, float]]]:
    from diffusers import DiffusionPipeline

    from flashdistill.models.backbones import denoiser_of
    from flashdistill.models.vae import LatentCodec
    from flashdistill.shapes.data import ShapesPool
    from flashdistill.shapes.vp_denoiser import call_denoiser
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, encode_prompts

    pool = ShapesPool(n, seed=99, split="train")
    images = torch.stack([pool[i]["image"] for i in range(n)])
    prompts = [pool[i]["prompt"] for i in range(n)]
    pipe = DiffusionPipeline.from_pretrained(folder)
    net, kind = denoiser_of(pipe).eval(), pipe.scheduler.config.prediction_type
    acp = pipe.scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        x0 = LatentCodec(pipe.vae).encode(images)
        embeds, mask = encode_prompts(pipe, prompts, VPTeacherConfig.max_sequence_length)
        for idx in indices:
            noise = torch.randn(x0.shape, generator=g)
            a = acp[idx]
            x = a.sqrt() * x0 + (1 - a).sqrt() * noise
            out = call_denoiser(net, x, torch.full((n,), float(idx)), embeds, mask).float()
            est = (x - (1 - a).sqrt() * out) / a.sqrt() if kind == "epsilon" else a.sqrt() * x - (1 - a).sqrt() * out
            rows.append((idx, float(a / (1 - a)), float((est - x0).pow(2).mean().sqrt())))
    return kind, float(x0.pow(2).mean().sqrt()), rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--indices", default="999,900,800,700,600,400,200")
    args = ap.parse_args()
    indices = [int(i) for i in args.indices.split(",")]
    print("| teacher | predicts | zero | " + " | ".join(f"index {i}" for i in indices) + " |")
    print("|---|---|---|" + "---|" * len(indices))
    for folder in args.folders:
        kind, zero, rows = x0_errors(folder, args.n, indices)
        cells = " | ".join(f"{err:.2f} (SNR {snr:.2g})" for _, snr, err in rows)
        print(f"| `{folder}` | {kind} | {zero:.2f} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
