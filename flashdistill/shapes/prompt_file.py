"""``flashdistill shapes-prompts``: write Shapes captions (with their specs) as a prompt file for generate-data, or
(``--images DIR``) rendered scenes with their captions: the real image-caption pairs Flash Diffusion noises
(``flashdistill generate-data images=DIR``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import world

__all__ = ["write_prompts", "write_images", "add_args", "run"]


def write_prompts(path: str | Path, n: int, seed: int = 0, split: str = "train") -> Path:
    """``n`` captions of ``split`` drawn with ``seed`` as JSONL (``prompt`` and ``spec`` per line)."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(n):
        caption, spec = world.sample_scene(rng, split=split)
        lines.append(json.dumps({"prompt": caption, "spec": spec.to_dict()}))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_images(folder: str | Path, n: int, seed: int = 0, split: str = "train") -> Path:
    """``n`` rendered scenes of ``split`` as ``folder/NNNNNNN.png`` plus ``folder/captions.jsonl`` (``file``,
    ``prompt``, ``spec`` per line), the layout ``generate-data images=`` reads. Returns the captions file."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (image, caption, spec) in enumerate(world.make_dataset(n, seed=seed, split=split)):
        name = f"{k:07d}.png"
        Image.fromarray(image).save(folder / name)
        lines.append(json.dumps({"file": name, "prompt": caption, "spec": spec.to_dict()}))
    path = folder / "captions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output .jsonl of captions")
    parser.add_argument("--images", help="instead: render the scenes into this folder (PNGs + captions.jsonl)")
    parser.add_argument("--n", type=int, default=2048, help="number of prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=world.SPLITS, default="train")


def run(args) -> int:
    from ..errors import ConfigError

    if (args.out is None) == (args.images is None):
        raise ConfigError("give exactly one of --out (a caption file) or --images (a folder of rendered scenes)")
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: give at least 1")
    if args.images:
        print(f"wrote {args.n} rendered scenes and {write_images(args.images, args.n, args.seed, args.split)}")
    else:
        print(f"wrote {args.n} prompts to {write_prompts(args.out, args.n, args.seed, args.split)}")
    return 0
