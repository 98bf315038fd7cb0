"""Exponential moving average of a model's parameters (and floating buffers).

``shadow ← decay·shadow + (1 − decay)·param`` after every optimiser step. Give either ``decay`` or
``half_life`` (in updates: the weight of an update halves after that many further updates, so
``decay = 0.5 ** (1 / half_life)``). An optional ``warmup`` uses ``min(decay, (1 + n) / (10 + n))`` so early
averages are not dominated by the random initialisation.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["EMA", "decay_from_half_life"]


def decay_from_half_life(half_life: float) -> float:
    """Per-update decay whose weights halve every ``half_life`` updates."""
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    return 0.5 ** (1.0 / half_life)


class EMA:
    """EMA of ``model``'s floating parameters and buffers, kept in float32 on the model's device."""

    def __init__(
        self,
        model: nn.Module,
        decay: float | None = None,
        half_life: float | None = None,
        warmup: bool = False,
    ):
        if (decay is None) == (half_life is None):
            raise ValueError("give exactly one of decay or half_life")
        self.decay = decay if decay is not None else decay_from_half_life(half_life)
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = {k: v.detach().float().clone() for k, v in self._tracked(model).items()}

    @staticmethod
    def _tracked(model: nn.Module) -> dict[str, torch.Tensor]:
        state = dict(model.named_parameters())
        state.update({k: b for k, b in model.named_buffers() if b.is_floating_point()})
        return state

    def current_decay(self) -> float:
        """The decay the next update will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        d = self.current_decay()
        for k, v in self._tracked(model).items():
            self.shadow[k].lerp_(v.detach().float(), 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averages."""
        for k, v in self._tracked(model).items():
            v.copy_(self.shadow[k].to(v.dtype))

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module):
        """Temporarily give ``model`` the EMA weights (e.g. for sample grids), then restore the live ones."""
        backup = {k: v.detach().clone() for k, v in self._tracked(model).items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in self._tracked(model).items():
                    v.copy_(backup[k])

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "warmup": self.warmup,
            "shadow": dict(self.shadow),
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model; differing keys: {sorted(missing)[:5]}")
        shapes = [k for k, v in state["shadow"].items() if v.shape != self.shadow[k].shape]
        if shapes:
            raise ValueError(f"EMA state does not match the model; differing shapes: {shapes[:5]}")
        self.decay, self.num_updates, self.warmup = state["decay"], state["num_updates"], state["warmup"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
