"""``flashdistill merge-lora``: fold a LoRA student into its base and write a full pipeline folder.

The result runs like any student folder (the stock pipeline class's ``from_pretrained`` with the sigmas or timesteps
and guidance in its ``flashdistill.json``; its scheduler is the student's), at the speed of the base model: no
adapter layers remain. SD3, SD1.5/SDXL UNets (``fuse_lora``) and PixArt-α (peft's ``merge_and_unload``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_args", "run", "merge_lora_folder"]


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora", required=True, help="LoRA student folder (written by the flash_diffusion recipe)")
    parser.add_argument("--model", default=None, help="base pipeline folder (default: the one the LoRA records)")
    parser.add_argument("--out", required=True, help="output pipeline folder")


def merge_lora_folder(lora: str | Path, out: str | Path, model: str | Path | None = None) -> Path:
    from ..config import ConfigError
    from .folders import RUN_SETTINGS_FILE, is_lora_folder, load_pipeline, read_run_settings
    from .stock import rebuild

    lora, out = Path(lora), Path(out)
    if not is_lora_folder(lora):
        raise ConfigError(f"--lora {lora}: not a LoRA student folder ({RUN_SETTINGS_FILE} with kind: lora)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not empty; choose a new folder")
    from ..models.backbones import KINDS

    kinds = tuple(KINDS.values())
    pipe = load_pipeline(model, lora=lora, kinds=kinds) if model else load_pipeline(lora, kinds=kinds)
    if hasattr(pipe, "fuse_lora"):
        pipe.fuse_lora(components=["unet" if hasattr(pipe, "unet") else "transformer"], lora_scale=1.0)
        pipe.unload_lora_weights()
    else:  # PixArt-α: the transformer is peft-wrapped (no LoRA loader in diffusers)
        pipe = rebuild(pipe, transformer=pipe.transformer.merge_and_unload())
    pipe.save_pretrained(out)
    info = {k: v for k, v in read_run_settings(lora).items() if k not in ("kind", "base")}
    info.update(kind="student", merged_from=str(lora))
    (out / RUN_SETTINGS_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return out


def run(args) -> int:
    print(f"merged pipeline written to {merge_lora_folder(args.lora, args.out, args.model)}")
    return 0
