"""``flashdistill shapes-prompts``: write Shapes captions (with their specs) as a prompt file for generate-data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import world

__all__ = ["write_prompts", "add_args", "run"]


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


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output .jsonl")
    parser.add_argument("--n", type=int, default=2048, help="number of prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=world.SPLITS, default="train")


def run(args) -> int:
    print(f"wrote {args.n} prompts to {write_prompts(args.out, args.n, args.seed, args.split)}")
    return 0
