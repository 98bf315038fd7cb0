"""Building the ``accelerate.Accelerator`` for a job, and model switches it does not cover."""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch import nn

from .configs import AccelerateConfig

__all__ = ["make_accelerator", "enable_gradient_checkpointing"]


def make_accelerator(cfg: AccelerateConfig) -> Accelerator:
    """An ``Accelerator`` with the config's precision; the process layout comes from ``accelerate launch``.

    Gradient accumulation is done by :func:`flashdistill.training.updates.backward` per model (several models
    with their own optimisers share one job), so accelerate's own counter stays at 1.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    # Under `accelerate launch` on a machine without GPUs, accelerate sets up gloo only when asked for CPU;
    # otherwise every process would silently run alone and they would overwrite each other's run folder.
    cpu = cfg.cpu or (launched > 1 and not _has_accelerator())
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)]
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, cpu=cpu, kwargs_handlers=handlers, gradient_accumulation_steps=1
    )
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"launched as {launched} processes but accelerate set up {accelerator.num_processes}; "
            "check the accelerate config (distributed_type) and that the GPUs are visible"
        )
    return accelerator


def _has_accelerator() -> bool:
    api = getattr(torch, "accelerator", None)
    if api is not None and hasattr(api, "is_available"):
        return bool(api.is_available())
    return torch.cuda.is_available()


def enable_gradient_checkpointing(module: nn.Module) -> int:
    """Switch on gradient checkpointing in ``module`` or in the outermost submodules that support it
    (diffusers' ``enable_gradient_checkpointing``, transformers' ``gradient_checkpointing_enable``).

    Returns how many modules were switched; raises ``ValueError`` if none supports it.
    """
    done: list[str] = []
    for name, sub in module.named_modules():
        if any(name == d or name.startswith(d + ".") for d in done if d) or ("" in done):
            continue
        for attr in ("enable_gradient_checkpointing", "gradient_checkpointing_enable"):
            fn = getattr(sub, attr, None)
            if callable(fn):
                fn()
                done.append(name)
                break
    if not done:
        raise ValueError(f"{type(module).__name__} has no submodule supporting gradient checkpointing")
    return len(done)
