"""Everything about a run's progress that is not a model or an optimiser: the step, phase counters, stateful
objects (data streams, samplers) and named random generators. Saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

__all__ = ["TrainState", "Stateful"]


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainState:
    """``step`` counts *completed* steps. ``counters`` are free-form phase counters a recipe keeps (e.g.
    ``proxy_updates``, ``head_refreshes``). ``tracked`` objects and ``generators`` are per process."""

    step: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    tracked: dict[str, Stateful] = field(default_factory=dict)
    generators: dict[str, torch.Generator] = field(default_factory=dict)

    def track(self, name: str, obj: Any) -> Any:
        """Save/restore ``obj`` (anything with ``state_dict``/``load_state_dict``) with each checkpoint."""
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"tracked object '{name}' needs state_dict() and load_state_dict()")
        if name in self.tracked:
            raise ValueError(f"an object named '{name}' is already tracked")
        self.tracked[name] = obj
        return obj

    def generator(self, name: str, seed: int, device: str | torch.device = "cpu") -> torch.Generator:
        """A named ``torch.Generator`` seeded with ``seed``, saved and restored with checkpoints."""
        if name in self.generators:
            raise ValueError(f"a generator named '{name}' already exists")
        g = torch.Generator(device=device).manual_seed(seed)
        self.generators[name] = g
        return g

    def shared_state(self) -> dict:
        """The part every process agrees on (written once by the main process)."""
        return {"step": self.step, "counters": dict(self.counters)}

    def load_shared_state(self, state: dict) -> None:
        self.step, self.counters = int(state["step"]), dict(state["counters"])

    def process_state(self) -> dict:
        """The per-process part (tracked objects; generators are saved with the RNG snapshot)."""
        return {name: obj.state_dict() for name, obj in self.tracked.items()}

    def load_process_state(self, state: dict) -> None:
        if set(state) != set(self.tracked):
            raise ValueError(f"checkpoint tracks {sorted(state)}, this run tracks {sorted(self.tracked)}")
        for name, obj in self.tracked.items():
            obj.load_state_dict(state[name])
