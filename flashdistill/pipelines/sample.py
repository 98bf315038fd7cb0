"""``flashdistill sample``: run a teacher or distilled student folder in stock diffusers with the right settings.

A folder written by flashdistill carries ``flashdistill.json`` (its sigmas, guidance scale, T5 token length and
resolution); those become the defaults here, so a 4-step student runs as 4 steps without CFG automatically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .folders import RUN_SETTINGS_FILE, guidance_of, load_pipeline, read_run_settings, resolve_model

__all__ = ["add_args", "run", "read_run_settings", "guidance_of", "load_pipeline", "RUN_SETTINGS_FILE"]


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped SD3-nano teacher)")
    parser.add_argument("--prompt", action="append", required=True, help="prompt (repeat for several)")
    parser.add_argument("--steps", type=int, default=None, help="override: number of Euler steps")
    parser.add_argument("--guidance", type=float, default=None, help="override: CFG scale (<=1 disables)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt")
    parser.add_argument("--no-t5", action="store_true", help="load without the T5 text encoder")
    parser.add_argument("--lora", default=None, help="a LoRA student folder to load on --model (its sigmas, "
                        "guidance and scheduler shift are applied); a LoRA folder given as --model finds its base")
    parser.add_argument("--out", default="samples", help="output folder for PNGs")


def default_model() -> Path:
    return resolve_model(None)


def check_args(args) -> None:
    """Refuse values the pipeline would silently accept (``--steps 0`` used to write an image)."""
    from ..config import ConfigError

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps {args.steps}: give at least 1 step")
    if args.guidance is not None and args.guidance < 0:
        raise ConfigError(f"--guidance {args.guidance}: the CFG scale must be >= 0 (<= 1 disables CFG)")
    if args.num_images < 1:
        raise ConfigError(f"--num-images {args.num_images}: give at least 1")


def run(args) -> int:
    import torch

    check_args(args)

    folder = Path(args.model) if args.model else default_model()
    settings = read_run_settings(folder)
    if args.lora:
        settings = {**settings, **read_run_settings(args.lora)}  # the student's sigmas and guidance win
    from ..models.backbones import KINDS
    from .stock import family_of, stock_call_kwargs

    pipe = load_pipeline(folder, drop_t5=args.no_t5, lora=args.lora, kinds=tuple(KINDS.values()))
    kwargs = stock_call_kwargs(settings, family_of(pipe), steps=args.steps, guidance=guidance_of(settings,
                                                                                                  args.guidance))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    images = pipe(args.prompt, num_images_per_prompt=args.num_images, generator=generator, **kwargs).images
    for i, image in enumerate(images):
        path = out / f"{i // args.num_images:03d}_{i % args.num_images}.png"
        image.save(path)
    print(f"wrote {len(images)} image(s) to {out}/ with {kwargs}")
    return 0
