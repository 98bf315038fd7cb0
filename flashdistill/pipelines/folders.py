"""Pipeline folders as flashdistill writes and reads them: stock diffusers folders plus ``flashdistill.json``
(sigmas, guidance scale, T5 token length, resolution). Library code: problems raise ``ConfigError``/``DataError``
naming the folder or file, never ``SystemExit``."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import ConfigError
from ..errors import DataError
from ..families import FAMILIES

__all__ = ["RUN_SETTINGS_FILE", "SHIPPED_NAMES", "recorded_base", "DEFAULT_GUIDANCE", "read_run_settings",
           "guidance_of", "load_pipeline", "resolve_model", "is_lora_folder", "check_pipeline_folder", "has_t5",
           "student_scheduler"]

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


SHIPPED_NAMES = ("sd3-nano", "unet-nano", "pixart-nano")  # the teachers a name resolves to (resolve_model)


def recorded_base(teacher: str | Path) -> str:
    """How a LoRA student records its base teacher: a shipped name (or ``tiny``) as given, so it resolves on any
    machine; any other folder as its absolute path."""
    return str(teacher) if str(teacher) in SHIPPED_NAMES + ("tiny",) else str(Path(teacher).resolve())


def resolve_model(name: str | Path | None) -> Path:
    """``None`` or ``"sd3-nano"`` -> the shipped teacher, ``"unet-nano"`` / ``"pixart-nano"`` the shipped VP
    teachers; anything else is a folder path."""
    from ..assets_paths import ASSETS, teacher_path

    if name in ("unet-nano", "pixart-nano"):
        path = ASSETS / str(name)
        if not (path / "model_index.json").is_file():
            raise ConfigError(f"{name}: the {name} teacher is not at {path} yet; train it with `flashdistill "
                              f"train-teacher --config configs/{str(name).replace('-', '_')}_teacher.yaml`")
        return path
    return teacher_path() if name in (None, "sd3-nano") else Path(name)


def is_lora_folder(folder: str | Path) -> bool:
    """A LoRA student folder (``flashdistill.json`` with ``kind: lora``, adapter weights, no pipeline)."""
    folder = Path(folder)
    return not (folder / "model_index.json").exists() and read_run_settings(folder).get("kind") == "lora"


def load_pipeline(folder: str | Path, drop_t5: bool = False, dtype=None, lora: str | Path | None = None,
                  kinds: tuple[str, ...] = ("sd3",)):
    """Stock ``StableDiffusion3Pipeline.from_pretrained`` (offline), optionally without T5.

    A LoRA student folder (``is_lora_folder``) loads its recorded base teacher, then ``load_lora_weights`` and the
    scheduler shift it was trained for; ``lora=`` does the same on top of ``folder``. ``kinds`` names the pipeline
    families the caller drives (``models.backbones.KINDS``: ``"sd3"``, ``"unet"``, ``"pixart"``); a folder of another
    family is refused by name before any weights load.
    """
    import torch
    import transformers
    from diffusers import StableDiffusion3Pipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # per-component loading bars drown the job's own progress
    transformers.utils.logging.disable_progress_bar()
    folder = Path(folder)
    if lora is None and is_lora_folder(folder):
        lora, folder = folder, read_run_settings(folder).get("base", "sd3-nano")
        if folder == "tiny":
            from ..models.tiny import tiny_sd3_pipeline

            pipe = tiny_sd3_pipeline(seed=0)
            pipe.set_progress_bar_config(disable=True)
            return _with_lora(pipe, Path(lora))
        folder = resolve_model(folder)
    kind = check_pipeline_folder(folder, kinds)
    if kind != "sd3":
        return _load_vp(folder, dtype, lora)
    # a T5-free export records text_encoder_3 as [null, null]; diffusers does not treat it as optional, so the
    # stock load of such a folder is from_pretrained(folder, text_encoder_3=None, tokenizer_3=None)
    drop_t5 = drop_t5 or not has_t5(folder)
    kwargs = {"text_encoder_3": None, "tokenizer_3": None} if drop_t5 else {}
    if (folder / "transformer" / "int6.safetensors").exists():  # packed 6-bit export (flashdistill export)
        from .quantized import load_int6_transformer

        kwargs["transformer"] = load_int6_transformer(folder / "transformer", dtype=dtype)
    try:
        pipe = StableDiffusion3Pipeline.from_pretrained(folder, dtype=dtype or torch.float32, **kwargs)
    except (ValueError, OSError) as err:  # incomplete folder: missing components or weight files
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{folder}: not a loadable StableDiffusion3Pipeline folder ({first[:300]})") from None
    pipe.set_progress_bar_config(disable=True)
    return _with_lora(pipe, Path(lora)) if lora is not None else pipe


def has_t5(folder: str | Path) -> bool:
    """Whether a pipeline folder's ``model_index.json`` names a T5 text encoder (``text_encoder_3``)."""
    try:
        entry = json.loads((Path(folder) / "model_index.json").read_text()).get("text_encoder_3")
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(entry, list) and bool(entry) and entry[0] is not None


_WHAT = {"sd3": "rectified-flow SD3-family pipelines (SD3, SD3.5, SD3-nano)",
         "unet": "StableDiffusionPipeline (UNet) folders", "sdxl": "StableDiffusionXLPipeline folders",
         "pixart": "PixArtAlphaPipeline folders"}


def check_pipeline_folder(folder: Path, kinds: tuple[str, ...] = ("sd3",)) -> str:
    """The folder's family (``"sd3"``, ``"unet"``, ``"pixart"``); refuses, naming the folder, anything but a
    diffusers pipeline folder of one of ``kinds`` with readable settings."""
    if not (folder / "model_index.json").exists():
        raise ConfigError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    try:
        cls = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    except json.JSONDecodeError as err:
        raise DataError(f"{folder / 'model_index.json'}: not valid JSON ({err})") from None
    kind = FAMILIES.get(cls or "StableDiffusion3Pipeline")
    if kind not in kinds:
        allowed = " and ".join(_WHAT[k] for k in kinds)
        why = (" (the SD3.5-Flash recipe and the SD3-only tools need a rectified-flow teacher; variance-preserving "
               "UNet and PixArt teachers are distilled with the Flash Diffusion recipe)" if kinds == ("sd3",) else "")
        raise ConfigError(f"{folder}: a {cls}; this command runs {allowed}{why}")
    read_run_settings(folder)  # a broken flashdistill.json is named before any weights load
    return kind


def _load_vp(folder: Path, dtype, lora):
    """A UNet / PixArt pipeline folder through its stock class (``DiffusionPipeline`` picks it)."""
    import torch
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype or torch.float32)
    except (ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{folder}: not a loadable pipeline folder ({first[:300]})") from None
    pipe.set_progress_bar_config(disable=True)
    return _with_lora(pipe, Path(lora)) if lora is not None else pipe


def student_scheduler(scheduler, info: dict):
    """The scheduler a student runs with: ``info["scheduler_class"]`` (a diffusers class name, e.g. LCMScheduler
    for a VP student's re-noising sampler; default: the same class) from ``scheduler``'s config, with
    ``info["scheduler"]`` overrides."""
    name = info.get("scheduler_class")
    cls = type(scheduler)
    if name:
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not name.endswith("Scheduler"):
            raise DataError(f"scheduler_class {name!r} in flashdistill.json: not a diffusers scheduler")
    return cls.from_config(scheduler.config, **(info.get("scheduler") or {}))


def _with_lora(pipe, lora: Path):
    """The stock LoRA load of the pipeline's family (``load_lora_weights``; PixArt-α, which diffusers gives no LoRA
    loader: ``PeftModel.from_pretrained`` on its transformer) plus the scheduler recorded in ``flashdistill.json``."""
    if not any(lora.glob("*.safetensors")):
        raise ConfigError(f"--lora {lora}: no LoRA weights (*.safetensors) in this folder")
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "no LoRA keys for text_encoder": expected, the LoRA is the denoiser's
    try:
        if hasattr(pipe, "load_lora_weights"):
            pipe.load_lora_weights(lora)
        else:
            from peft import PeftModel

            if not (lora / "adapter_config.json").is_file():
                raise ConfigError(f"--lora {lora}: no adapter_config.json (a peft adapter folder is expected for a "
                                  f"{type(pipe).__name__})")
            transformer = PeftModel.from_pretrained(pipe.transformer, lora)
            pipe = type(pipe)(**{**pipe.components, "transformer": transformer})
            pipe.set_progress_bar_config(disable=True)
    finally:
        diffusers_logging.set_verbosity(level)
    pipe.scheduler = student_scheduler(pipe.scheduler, read_run_settings(lora))
    return pipe
