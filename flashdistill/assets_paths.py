"""Where the shipped assets live (no imports beyond the standard library, so any layer may ask)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS", "CONFIGS", "teacher_path", "shipped_config"]

ASSETS = Path(__file__).resolve().parent / "assets"
CONFIGS = Path(__file__).resolve().parent / "configs"  # the shipped YAMLs (package data; ``configs/`` in a checkout)


def shipped_config(path: str | Path) -> Path | None:
    """The shipped config a relative ``path`` names when it is not a file here: ``configs/sd35_flash/nano_dmd.yaml``
    or ``sd35_flash/nano_dmd.yaml`` both find the package's copy, so the documented commands run from any folder
    after ``pip install``. ``None`` when there is no such shipped file."""
    path = Path(path)
    if path.is_absolute():
        return None
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    candidate = CONFIGS.joinpath(*parts) if parts else None
    return candidate if candidate is not None and candidate.is_file() else None


def teacher_path() -> Path:
    """Folder of the shipped, trained SD3-nano teacher (a diffusers pipeline folder)."""
    path = ASSETS / "sd3-nano"
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(
            f"the SD3-nano teacher is missing at {path}; regenerate it with "
            "`flashdistill train-teacher --config configs/sd3_nano_teacher.yaml`")
    return path
