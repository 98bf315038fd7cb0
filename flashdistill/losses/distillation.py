"""Flash Diffusion distillation loss (Chadebec et al. 2024, arXiv 2406.02347, Eq. 6).

Data ``x0`` is noised to ``x_t`` at a point ``t = grid[j]`` of a K-point grid, ``j`` drawn from the phased
mixture (:class:`flashdistill.timesteps.FlashMixture`). The target is the teacher's (CFG) ODE solution from that
same ``x_t`` down to 0 *along the grid*: ``j`` Euler steps through ``grid[j−1], …, grid[0]``
(:func:`k_grid_solution`; this is why K = 64 doubles the teacher's cost over K = 32). The student predicts the
clean sample in one step, ``x̂0 = x_t − t·v_student(x_t, t)``. The loss is a per-sample distance between the
two: the mean squared error over ``(C, H, W)`` (default) or any ``distance(x0_student, x0_teacher) -> (B,)``
(a perceptual distance in a feature network, LPIPS on decoded images; see the recipe).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..sampling import euler_solve
from ..types import Conditioning, LossOutput
from ._precision import acc

__all__ = ["DistillationLoss", "k_grid_solution", "k_grid_paths"]


def k_grid_paths(j: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Per-sample Euler grids ``(B, J+1)``, ``J = max j``.

    Sample b stands still at ``grid[j_b]`` (zero-length steps, so no network is asked about t = 0) and then goes
    ``grid[j_b], grid[j_b − 1], …, grid[0]``. ``grid`` holds the ``(K+1,)`` increasing flow times of the K-point
    grid, ``grid[0]`` its end (0 for flow models).
    """
    j = j.to("cpu", torch.long)
    grid = torch.as_tensor(grid, dtype=torch.float64).cpu()
    if j.min() < 1 or j.max() >= len(grid):
        raise ValueError(f"grid indices must lie in 1..{len(grid) - 1}, got {j.tolist()}")
    cols = torch.arange(int(j.max()) + 1)
    return grid[torch.minimum(j[:, None], int(j.max()) - cols[None, :])]


@torch.no_grad()
def k_grid_solution(teacher, x_t: torch.Tensor, j: torch.Tensor, grid: torch.Tensor, cond: Conditioning):
    """The teacher's ODE solution from ``x_t`` (at ``grid[j]``, per sample) to ``grid[0]`` through the grid points
    below it, ``(B, C, H, W)`` without gradient (a target). ``max(j)`` batched teacher calls."""
    return euler_solve(teacher, x_t, k_grid_paths(j, grid), cond)


class DistillationLoss:
    """Distance of the student's one-step x0 to the teacher's solution from the same noised input (Eq. 6).

    Args:
        distance: ``distance(x0_student, x0_teacher) -> (B,)``; ``None`` is the mean squared error over
            ``(C, H, W)``, computed in at least fp32.
    """

    def __init__(self, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        self.distance = distance

    def __call__(self, x0_student: torch.Tensor, x0_teacher: torch.Tensor) -> LossOutput:
        """``x0_student`` ``(B, C, H, W)`` carries the student's graph (``x0_from_v(x_t, v_student, t)``);
        ``x0_teacher`` from :func:`k_grid_solution`. Returns ``(B,)`` losses."""
        x0_teacher = x0_teacher.detach()  # stop-gradient: the teacher's solution is the target
        if self.distance is None:
            loss = (acc(x0_student) - acc(x0_teacher)).pow(2).flatten(1).mean(1)
        else:
            loss = self.distance(x0_student, x0_teacher)
            if loss.shape != (x0_student.shape[0],):
                raise ValueError(f"distance must return per-sample values ({x0_student.shape[0]},), "
                                 f"got {tuple(loss.shape)}")
        return LossOutput(loss, {"distill/loss": loss.mean().detach()})
