"""``flashdistill info``: versions, device and shipped assets, for bug reports."""

from __future__ import annotations

import argparse
import importlib.metadata as md
from pathlib import Path

__all__ = ["add_args", "run"]


def add_args(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args) -> int:
    import torch

    for pkg in ("flashdistill", "torch", "diffusers", "transformers", "peft", "accelerate", "safetensors",
                "torchao", "torchmetrics"):
        try:
            print(f"{pkg:14s} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg:14s} (not installed)")
    print(f"{'device':14s} {'cuda: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")
    assets = Path(__file__).resolve().parent.parent / "assets"
    for item in sorted(assets.iterdir()) if assets.exists() else []:
        size = sum(f.stat().st_size for f in item.rglob("*")) if item.is_dir() else item.stat().st_size
        print(f"{'asset':14s} {item.name} ({size / 1e6:.1f} MB)")
    return 0
