"""Trajectory guidance (SD3.5-Flash, Bandyopadhyay et al. 2025, Eq. 4).

Stage-1 pre-training of the few-step student. For a student-grid segment ``t_i → t_j`` (``t_j < t_i``) and a
point ``x_ti`` on the teacher's (CFG) trajectory, the student's Euler jump

    ``x̂_tj = x_ti + (t_j − t_i)·v_student(x_ti, t_i)``

should land where the teacher's ODE solve over the same segment lands, ``x_tj``. The residual is written in
position space, ``r = x̂_tj − x_tj``; ``weighting`` chooses how segments are weighed:

* ``"equal"`` (default): ``mean r² / (t_i − t_j)²``, *exactly* the velocity-space MSE between ``v_student`` and the
  teacher's average velocity over the segment ``(x_tj − x_ti) / (t_j − t_i)``: every segment on the same scale.
* ``"t_i"``: Eq. 4 as the paper writes it, the residual multiplied by ``t_i``: ``mean (t_i·r)² / (t_i − t_j)²``,
  so segments weigh ``∝ t_i²`` (on the 4-step grid: 16 : 9 : 4 : 1 from the noisiest down).
* ``"position"``: the raw position-space ``mean r²`` (on a uniform grid only a constant times ``"equal"``).
"""

from __future__ import annotations

import torch

from ..flow import euler_step
from ..sampling import euler_solve
from ..types import Conditioning, LossOutput
from ._precision import acc

__all__ = ["TrajectoryLoss", "teacher_segment"]


def _as_batch_t(t, x: torch.Tensor) -> torch.Tensor:
    """A float or ``(B,)`` time as a ``(B,)`` tensor in ``x``'s dtype and device."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]).clone() if t.ndim == 0 else t


@torch.no_grad()
def teacher_segment(
    teacher_cfg, x_ti: torch.Tensor, t_i, t_j, cond: Conditioning, substeps: int
) -> torch.Tensor:
    """Integrate the (CFG-wrapped) teacher from ``t_i`` to ``t_j`` with ``substeps`` uniform Euler steps.

    ``x_ti`` ``(B, C, H, W)``; ``t_i``, ``t_j`` floats or ``(B,)`` tensors (per-sample segments). Returns the
    landing point ``x_tj`` ``(B, C, H, W)``, without gradient (it is a target).
    """
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    t_i, t_j = _as_batch_t(t_i, x_ti).double(), _as_batch_t(t_j, x_ti).double()
    frac = torch.linspace(0.0, 1.0, substeps + 1, dtype=torch.float64, device=x_ti.device)
    grids = t_i[:, None] + (t_j - t_i)[:, None] * frac[None]  # (B, substeps + 1), one sub-grid per sample
    return euler_solve(teacher_cfg, x_ti, grids, cond)


class TrajectoryLoss:
    """Per-sample ``w · mean_{C,H,W}(x_ti + (t_j − t_i)·v_student(x_ti, t_i) − x_tj)²`` (Eq. 4).

    Args:
        weighting: ``"equal"`` (``w = 1/(t_i − t_j)²``, velocity-space MSE), ``"t_i"`` (``w = t_i²/(t_i − t_j)²``,
            the paper's) or ``"position"`` (``w = 1``); see the module docstring.
    """

    WEIGHTINGS = ("equal", "t_i", "position")

    def __init__(self, weighting: str = "equal"):
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"unknown trajectory weighting {weighting!r}; expected one of {self.WEIGHTINGS}")
        self.weighting = weighting

    def __call__(
        self, student, x_ti: torch.Tensor, t_i, t_j, x_tj: torch.Tensor, cond: Conditioning
    ) -> LossOutput:
        """``x_ti``, ``x_tj`` ``(B, C, H, W)`` teacher trajectory point and landing point; ``t_i``, ``t_j``
        floats or ``(B,)``. Gradients reach only ``student``'s parameters. Returns ``(B,)`` losses (at least
        fp32)."""
        t_i, t_j = _as_batch_t(t_i, x_ti), _as_batch_t(t_j, x_ti)
        if not bool((t_j < t_i).all()):
            raise ValueError("each segment must go from a noisier t_i to a cleaner t_j < t_i")
        # stop-gradient: the teacher trajectory point and its landing point are fixed inputs/targets.
        x_ti, x_tj = x_ti.detach(), x_tj.detach()
        v = student(x_ti, t_i, cond)
        jump = euler_step(acc(x_ti), acc(v), acc(t_i), acc(t_j))
        err = (jump - acc(x_tj)).pow(2).flatten(1).mean(1)
        dt2 = acc(t_i - t_j).pow(2)
        if self.weighting == "position":
            loss = err
        else:
            loss = err / dt2 * (acc(t_i).pow(2) if self.weighting == "t_i" else 1.0)
        logs = {
            "tg/loss": loss.mean().detach(),
            "tg/pos_mse": err.mean().detach(),
            "tg/vel_mse": (err / dt2).mean().detach(),
        }
        return LossOutput(loss, logs)
