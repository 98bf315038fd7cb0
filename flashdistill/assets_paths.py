"""Where the shipped assets live (no imports beyond the standard library, so any layer may ask)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS", "teacher_path"]

ASSETS = Path(__file__).resolve().parent / "assets"


def teacher_path() -> Path:
    """Folder of the shipped, trained SD3-nano teacher (a diffusers pipeline folder)."""
    path = ASSETS / "sd3-nano"
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(
            f"the SD3-nano teacher is missing at {path}; regenerate it with "
            "`flashdistill train-teacher --config configs/sd3_nano_teacher.yaml`")
    return path
