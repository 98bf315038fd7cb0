"""One trained model with its optimiser, and the two halves of an update: ``backward`` and ``optimizer_step``.

``backward`` can be called several times before ``optimizer_step`` (gradient accumulation; non-final
micro-batches skip the DDP all-reduce via ``accelerator.no_sync``). ``optimizer_step`` clips, checks for
non-finite values (agreeing across processes, so every rank skips together), steps AdamW and the lr schedule,
updates the model's EMAs and clears the gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn

from .ema import EMA
from .guard import NonFiniteGuard, nonfinite_terms

__all__ = ["ModelSlot", "backward", "optimizer_step", "frozen"]


@dataclass
class ModelSlot:
    """A named trained model.

    ``model`` is what ``accelerate`` prepared (DDP/FSDP wrapper): call it in this model's own update.
    ``module`` is the bare network: call it when the model is only a fixed function inside *another* model's
    update (e.g. the proxy inside the generator step, under :func:`frozen`), so no DDP bookkeeping is started.
    """

    name: str
    model: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    max_grad_norm: float | None = None
    emas: list[EMA] = field(default_factory=list)
    pending: int = 0  # micro-batches back-propagated since the last optimizer_step
    bad_terms: list[str] = field(default_factory=list)  # non-finite loss terms seen in those micro-batches
    updates: int = 0  # successful optimiser steps so far

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on all parameters of ``modules`` (restored afterwards)."""
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def backward(
    accelerator: Accelerator,
    slot: ModelSlot,
    terms: dict[str, torch.Tensor],
    scale: float = 1.0,
    sync: bool = True,
) -> dict[str, torch.Tensor]:
    """Back-propagate ``scale · Σ terms`` into ``slot``'s gradients; returns the unscaled term values.

    Terms must be scalars (reduce per-sample losses first). The first call after a step clears stale gradients
    (e.g. ones another model's loss left on this model). ``sync=False`` defers the gradient all-reduce (use it
    for every micro-batch but the last). A non-finite term is recorded, not raised: the backward still runs
    so that all processes take part in the same collectives, and ``optimizer_step`` then skips the update.
    """
    if not terms:
        raise ValueError(f"no loss terms given for '{slot.name}'")
    for name, value in terms.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            raise ValueError(f"loss term '{name}' for '{slot.name}' must be a scalar tensor; use .mean()")
    if slot.pending == 0:
        slot.optimizer.zero_grad(set_to_none=True)
        slot.bad_terms = []
    slot.bad_terms += [t for t in nonfinite_terms(terms) if t not in slot.bad_terms]
    total = sum(terms.values()) * scale
    context = contextlib.nullcontext() if sync else accelerator.no_sync(slot.model)
    with context:
        accelerator.backward(total)
    slot.pending += 1
    # detached tensors, not floats: converting here would sync a GPU once per term per step; the run reduces
    # them once per metrics row
    return {name: value.detach() for name, value in terms.items()}


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def optimizer_step(
    accelerator: Accelerator, slot: ModelSlot, guard: NonFiniteGuard, step: int
) -> dict[str, float]:
    """Clip, check, step and clear; returns logs ``grad_norm/<name>``, ``lr/<name>`` and ``skipped/<name>``.

    Under fp16 the gradient scaler owns overflow handling (it skips and lowers its scale by itself), so only
    non-finite *loss terms* count towards the guard there.
    """
    if slot.pending == 0:
        raise RuntimeError(f"optimizer_step('{slot.name}') called with no backward since the last step")
    params = [p for p in slot.model.parameters() if p.requires_grad]
    max_norm = slot.max_grad_norm if slot.max_grad_norm is not None else float("inf")
    norm = accelerator.clip_grad_norm_(params, max_norm)
    norm = float(norm) if norm is not None else float("nan")
    scaler_owns_overflow = accelerator.scaler is not None
    bad_loss = _any_process(accelerator, bool(slot.bad_terms))
    bad_grad = not scaler_owns_overflow and not torch.isfinite(torch.tensor(norm)).item()
    logs = {f"grad_norm/{slot.name}": norm, f"lr/{slot.name}": slot.lr}
    slot.pending = 0
    if bad_loss or bad_grad:
        what = (
            f"loss term(s) {', '.join(slot.bad_terms)}"
            if slot.bad_terms
            else "loss on another process"
            if bad_loss
            else f"gradient (norm {norm})"
        )
        slot.optimizer.zero_grad(set_to_none=True)
        logs[f"skipped/{slot.name}"] = 1.0
        guard.report(slot.name, step, what)
        return logs
    slot.optimizer.step()
    skipped = bool(getattr(slot.optimizer, "step_was_skipped", False))  # fp16 scaler overflow
    slot.optimizer.zero_grad(set_to_none=True)
    logs[f"skipped/{slot.name}"] = float(skipped)
    if skipped:
        return logs
    slot.scheduler.step()
    slot.updates += 1
    for ema in slot.emas:
        ema.update(slot.module)
    guard.ok(slot.name)
    return logs
