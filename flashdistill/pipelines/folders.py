"""Pipeline folders as flashdistill writes and reads them: stock diffusers folders plus ``flashdistill.json``
(sigmas, guidance scale, T5 token length, resolution). Library code: problems raise ``ConfigError``/``DataError``
naming the folder or file, never ``SystemExit``."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import ConfigError
from ..errors import DataError

__all__ = ["RUN_SETTINGS_FILE", "DEFAULT_GUIDANCE", "read_run_settings", "guidance_of", "load_pipeline",
           "resolve_model"]

RUN_SETTINGS_FILE = "flashdistill.json"
DEFAULT_GUIDANCE = 4.5  # for folders without a recorded CFG scale (plain diffusers folders)


def guidance_of(settings: dict, override: float | None = None) -> float:
    """The CFG scale to use: ``override`` if given, else the folder's recorded one (``read_run_settings``), else
    ``DEFAULT_GUIDANCE``."""
    return override if override is not None else settings.get("guidance_scale", DEFAULT_GUIDANCE)


def read_run_settings(folder: str | Path) -> dict:
    """The folder's ``flashdistill.json`` (empty dict for a plain diffusers folder)."""
    path = Path(folder) / RUN_SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(settings, dict):
        raise DataError(f"{path}: expected a JSON object of settings, got {type(settings).__name__}")
    return settings


def resolve_model(name: str | Path | None) -> Path:
    """``None`` or ``"sd3-nano"`` -> the shipped teacher; anything else is a folder path."""
    from ..assets_paths import teacher_path

    return teacher_path() if name in (None, "sd3-nano") else Path(name)


def load_pipeline(folder: str | Path, drop_t5: bool = False, dtype=None):
    """Stock ``StableDiffusion3Pipeline.from_pretrained`` (offline), optionally without T5."""
    import torch
    import transformers
    from diffusers import StableDiffusion3Pipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # per-component loading bars drown the job's own progress
    transformers.utils.logging.disable_progress_bar()
    folder = Path(folder)
    if not (folder / "model_index.json").exists():
        raise ConfigError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    kwargs = {"text_encoder_3": None, "tokenizer_3": None} if drop_t5 else {}
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, dtype=dtype or torch.float32, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe
