"""The stock diffusers call of a folder, from its ``flashdistill.json``: the keyword arguments ``flashdistill sample``
and the model cards' sample images use, and the code lines a model card shows, for each pipeline family."""

from __future__ import annotations

from ..families import CLASS_OF, FAMILIES
from .folders import DEFAULT_GUIDANCE

__all__ = ["family_of", "rebuild", "stock_call_kwargs", "lora_code"]

_CLASSES = CLASS_OF


def family_of(pipe) -> str:
    """``"sd3"``, ``"unet"`` or ``"pixart"`` of a loaded pipeline (a peft-wrapped PixArt transformer included)."""
    return FAMILIES.get(type(pipe).__name__, "sd3")


def rebuild(pipe, **components):
    """``pipe``'s class built from its components with some replaced, keeping its ``requires_safety_checker``
    (a config value, not a component: without it a safety-checker-free SD pipeline warns at construction)."""
    import inspect

    kwargs = {**pipe.components, **components}
    if "requires_safety_checker" in inspect.signature(type(pipe).__init__).parameters:
        kwargs["requires_safety_checker"] = bool(pipe.config.get("requires_safety_checker", False))
    return type(pipe)(**kwargs)


def stock_call_kwargs(settings: dict, family: str, steps: int | None = None, guidance: float | None = None) -> dict:
    """``pipe(prompt, **kwargs)`` for a folder's settings: its sigmas (SD3) or trailing timestep indices (UNet,
    PixArt) unless ``steps`` overrides, its guidance scale, T5 length and resolution; PixArt without resolution
    binning (its bins exist only for 256-1024 px models) and without caption cleaning (needs bs4/ftfy)."""
    kwargs: dict = {"guidance_scale": guidance if guidance is not None else settings.get("guidance_scale",
                                                                                          DEFAULT_GUIDANCE)}
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    elif family == "sd3" and "sigmas" in settings:
        kwargs["sigmas"] = list(settings["sigmas"])
    elif family != "sd3" and "timesteps" in settings:
        kwargs["timesteps"] = list(settings["timesteps"])
    else:
        kwargs["num_inference_steps"] = settings.get("num_inference_steps", 28)
    if family in ("sd3", "pixart"):
        kwargs["max_sequence_length"] = settings.get("max_sequence_length", 256 if family == "sd3" else 120)
    if family == "pixart":
        kwargs.update(use_resolution_binning=False, clean_caption=False)
    if settings.get("resolution"):
        kwargs.update(height=settings["resolution"], width=settings["resolution"])
    return kwargs


def lora_code(folder_name: str, info: dict, prompt: str, device: str) -> str:
    """The diffusers lines that run a LoRA student on its base, for any family."""
    family = info.get("backbone", "sd3")
    cls = _CLASSES[family]
    sched = info.get("scheduler_class") or "FlowMatchEulerDiscreteScheduler"
    overrides = ", ".join(f"{k}={v!r}" for k, v in (info.get("scheduler") or {}).items())
    call = ", ".join(f"{k}={v!r}" for k, v in stock_call_kwargs(info, family).items())
    lines = ["import torch", f"from diffusers import {sched}, {cls}"]
    if family == "pixart":  # diffusers has no LoRA loader for PixArt-α: peft wraps the transformer
        lines += ["from peft import PeftModel",
                  f'pipe = {cls}.from_pretrained("{info.get("base", "BASE")}", dtype=torch.float16)',
                  f'pipe = {cls}(**{{**pipe.components, "transformer": PeftModel.from_pretrained(pipe.transformer, '
                  f'"{folder_name}")}}).to({device})']
    else:
        dtype = "bfloat16" if family == "sd3" else "float16"
        lines += [f'pipe = {cls}.from_pretrained("{info.get("base", "BASE")}", dtype=torch.{dtype}).to({device})',
                  f'pipe.load_lora_weights("{folder_name}")']
    lines += [f"pipe.scheduler = {sched}.from_config(pipe.scheduler.config{', ' + overrides if overrides else ''})",
              f'image = pipe("{prompt}", {call}).images[0]']
    return "\n".join(lines)
