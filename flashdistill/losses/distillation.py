"""Flash Diffusion distillation loss (Chadebec et al. 2024, arXiv 2406.02347).

Data ``x0`` is noised to ``x_t`` at a timestep drawn from the phased mixture
(:class:`flashdistill.timesteps.FlashMixture`). The student predicts the clean sample in one step,
``x̂0_student = x_t − t·v_student(x_t, t)``; the target is the teacher's (CFG) ODE solution from the *same*
``x_t`` down to ``t = 0`` with ``teacher_steps`` uniform Euler steps, ``x̂0_teacher``. The loss is the
per-sample L2 ``mean_{C,H,W} (x̂0_student − x̂0_teacher)²``, accumulated in fp32 (an LPIPS variant is not
provided).
"""

from __future__ import annotations

import torch

from ..flow import x0_from_v
from ..types import Conditioning, LossOutput
from ._precision import acc
from .trajectory import teacher_segment

__all__ = ["DistillationLoss"]


class DistillationLoss:
    """Student one-step x0 vs. the teacher's multi-step ODE solution from the same noised input.

    Args:
        teacher_steps: Euler steps of the teacher solve from ``t`` to 0 (per-sample uniform sub-grid).
    """

    def __init__(self, teacher_steps: int = 4):
        if teacher_steps < 1:
            raise ValueError(f"teacher_steps must be >= 1, got {teacher_steps}")
        self.teacher_steps = teacher_steps

    def __call__(
        self,
        student,
        teacher,
        x_t: torch.Tensor,
        t,
        cond: Conditioning,
        x0_teacher: torch.Tensor | None = None,
    ) -> LossOutput:
        """``x_t`` ``(B, C, H, W)`` noised data at flow time ``t`` (float or ``(B,)``, ``t > 0``); ``teacher``
        already CFG-wrapped. ``x0_teacher`` may be passed precomputed. Returns ``(B,)`` losses (at least
        fp32)."""
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        t = t.expand(x_t.shape[0]).clone() if t.ndim == 0 else t
        # stop-gradient: the noised input is data, the teacher's solution is the target (teacher_segment is
        # no_grad).
        x_t = x_t.detach()
        if x0_teacher is None:
            x0_teacher = teacher_segment(teacher, x_t, t, torch.zeros_like(t), cond, self.teacher_steps)
        x0_teacher = x0_teacher.detach()
        x0_student = x0_from_v(x_t, student(x_t, t, cond), t)
        loss = (acc(x0_student) - acc(x0_teacher)).pow(2).flatten(1).mean(1)
        return LossOutput(loss, {"distill/loss": loss.mean().detach()})
