"""Non-finite guard: a NaN/inf loss term or gradient skips the update and is reported; too many in a row stop
the job with a clear message instead of silently training on garbage."""

from __future__ import annotations

import logging
import math

import torch

__all__ = ["NonFiniteError", "NonFiniteGuard", "nonfinite_terms"]

logger = logging.getLogger("flashdistill.training")


class NonFiniteError(RuntimeError):
    """Raised after ``max_in_a_row`` consecutive non-finite updates of one model."""


def nonfinite_terms(terms: dict[str, torch.Tensor | float]) -> list[str]:
    """Names of the loss terms that contain NaN or inf."""
    bad = []
    for name, value in terms.items():
        if isinstance(value, torch.Tensor):
            if not bool(torch.isfinite(value.detach()).all()):
                bad.append(name)
        elif not math.isfinite(float(value)):
            bad.append(name)
    return bad


class NonFiniteGuard:
    """Counts consecutive non-finite updates per model; ``report`` logs and raises when the limit is hit."""

    def __init__(self, max_in_a_row: int = 5):
        self.max_in_a_row = max_in_a_row
        self.in_a_row: dict[str, int] = {}
        self.total: dict[str, int] = {}

    def ok(self, model: str) -> None:
        """An update of ``model`` went through: reset its streak."""
        self.in_a_row[model] = 0

    def report(self, model: str, step: int, what: str) -> None:
        """Record a skipped update of ``model`` at ``step``; ``what`` names the loss term(s) or gradient."""
        n = self.in_a_row.get(model, 0) + 1
        self.in_a_row[model] = n
        self.total[model] = self.total.get(model, 0) + 1
        msg = (
            f"step {step}: non-finite {what} while updating '{model}'; update skipped "
            f"({n} in a row, limit {self.max_in_a_row})"
        )
        logger.warning(msg)
        if n >= self.max_in_a_row:
            raise NonFiniteError(
                f"stopping: {n} non-finite updates in a row for '{model}' (last at step {step}: {what}). "
                "Lower the learning rate, enable gradient clipping or check the inputs; resume from the last "
                "checkpoint with train.resume=true."
            )

    def state_dict(self) -> dict:
        return {"in_a_row": dict(self.in_a_row), "total": dict(self.total)}

    def load_state_dict(self, state: dict) -> None:
        self.in_a_row, self.total = dict(state["in_a_row"]), dict(state["total"])
