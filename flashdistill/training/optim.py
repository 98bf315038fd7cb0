"""AdamW and learning-rate schedules for one trained model, built from an :class:`OptimConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .configs import OptimConfig

__all__ = ["build_adamw", "build_schedule", "lr_factor"]


def build_adamw(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the parameters that require gradients (an error if there are none); fused where torch has it."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters (all have requires_grad=False)")
    # the fused kernel: one call for all tensors (CPU and CUDA; 4.8 vs 16.4 ms a step for SD3-nano's 222 tensors
    # on 2 CPU cores, measured); the per-tensor loop elsewhere
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, fused=fused or None
    )


def lr_factor(update: int, cfg: OptimConfig, max_steps: int) -> float:
    """Multiplier of the peak lr at update ``update`` (0-based): linear warm-up, then constant or cosine."""
    if cfg.warmup_steps > 0 and update < cfg.warmup_steps:
        return (update + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, max_steps - cfg.warmup_steps)
        progress = min(1.0, (update - cfg.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_schedule(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
    """A ``LambdaLR`` stepping once per successful update (its state is saved in checkpoints)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: lr_factor(u, cfg, max_steps))
