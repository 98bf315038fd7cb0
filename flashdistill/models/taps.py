"""Feature taps: collect the outputs of chosen sub-modules during a forward pass via forward hooks.

``FeatureTap(modules, select)`` records ``select(output)`` for each tapped module; with ``stop_after_last`` the
forward pass is abandoned (by a private exception) as soon as the deepest requested module has run, so asking
for early-block features does not pay for the rest of the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["FeatureTap", "StopForward"]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass once every requested feature is in hand."""


class FeatureTap:
    """Context manager tapping ``modules`` (in the order given). ``features`` holds one tensor per module."""

    def __init__(self, modules: Sequence[nn.Module], select: Callable[[object], torch.Tensor],
                 stop_after_last: bool = False):
        self.modules, self.select, self.stop_after_last = list(modules), select, stop_after_last
        self.features: list[torch.Tensor | None] = [None] * len(self.modules)
        self._handles: list = []

    def __enter__(self) -> FeatureTap:
        remaining = set(range(len(self.modules)))
        for i, module in enumerate(self.modules):
            def hook(_mod, _args, output, i=i):
                self.features[i] = self.select(output)
                remaining.discard(i)
                if self.stop_after_last and not remaining:
                    raise StopForward

            self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return exc_type is StopForward  # swallow only our own early stop

    def result(self) -> list[torch.Tensor]:
        missing = [i for i, f in enumerate(self.features) if f is None]
        if missing:
            raise RuntimeError(f"feature tap: tapped modules {missing} never ran during the forward pass")
        return list(self.features)  # type: ignore[arg-type]
