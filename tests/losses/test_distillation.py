"""Flash Diffusion distillation loss: the target is the teacher's ODE solve along the K-point grid from the same
noised input (Eq. 6)."""

from __future__ import annotations

import pytest
import torch

from flashdistill.flow import interpolate, x0_from_v
from flashdistill.losses import DistillationLoss, k_grid_paths, k_grid_solution
from flashdistill.sampling import euler_solve

SHAPE = (4, 2, 3, 3)


def _inputs(K=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = 0.3 + 0.6 * torch.randn(SHAPE, generator=g, dtype=torch.float64)
    noise = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    j = torch.tensor([2, 4, 6, 8])
    grid = torch.arange(K + 1, dtype=torch.float64) / K
    return interpolate(x0, noise, grid[j]), j, grid


def test_k_grid_paths_take_as_many_steps_as_grid_points_below():
    grid = torch.arange(5, dtype=torch.float64) / 4
    paths = k_grid_paths(torch.tensor([1, 4, 2]), grid)
    assert paths.tolist() == [[0.25, 0.25, 0.25, 0.25, 0], [1, 0.75, 0.5, 0.25, 0], [0.5, 0.5, 0.5, 0.25, 0]]
    with pytest.raises(ValueError, match="1..4"):
        k_grid_paths(torch.tensor([0, 2]), grid)


def test_target_equals_a_reference_euler_solve_per_sample(gaussian, make_cond):
    """Batched per-sample grids give, for each sample, the plain Euler solve over its own j grid points."""
    x_t, j, grid = _inputs()
    teacher = gaussian(0.3, 0.6)
    target = k_grid_solution(teacher, x_t, j, grid, make_cond(4))
    for b in range(4):
        own = grid[: int(j[b]) + 1].flip(0)  # grid[j], ..., grid[0]
        ref = euler_solve(teacher, x_t[b : b + 1], own, make_cond(1))
        torch.testing.assert_close(target[b : b + 1], ref, rtol=0, atol=1e-12)
    # and it approaches the exact ODE map as K grows
    errs = []
    for K in (8, 64):
        x_t, j, grid = _inputs(K)
        j = torch.full((4,), K)
        exact = torch.cat([teacher.ode_map(x_t[b : b + 1], 1.0, 0.0) for b in range(4)])
        errs.append((k_grid_solution(teacher, x_t, j, grid, make_cond(4)) - exact).abs().max().item())
    assert errs[1] < errs[0] / 4


def test_loss_is_the_mse_to_the_target_and_only_the_student_gets_gradient(gaussian, make_cond):
    x_t, j, grid = _inputs(seed=1)
    teacher, student = gaussian(0.3, 0.6), gaussian(0.0, 1.0)
    t = grid[j]
    target = k_grid_solution(teacher, x_t, j, grid, make_cond(4))
    x0_s = x0_from_v(x_t, student(x_t, t, None), t)
    out = DistillationLoss()(x0_s, target)
    torch.testing.assert_close(out.loss, (x0_s - target).pow(2).mean(dim=(1, 2, 3)))
    assert out.loss.min() > 1e-4
    out.loss.mean().backward()
    assert student.mu.grad.abs() > 0 and all(p.grad is None for p in teacher.parameters())
    # a one-step teacher solve from t lands on the teacher's own x0 estimate: loss 0 for student = teacher
    j1 = torch.ones(4, dtype=torch.long)
    t1 = grid[j1]
    x0_t = x0_from_v(x_t, teacher(x_t, t1, None), t1)
    assert DistillationLoss()(x0_t, k_grid_solution(teacher, x_t, j1, grid, make_cond(4))).loss.max() < 1e-28


def test_custom_distance_must_be_per_sample():
    x = torch.randn(SHAPE)
    out = DistillationLoss(distance=lambda a, b: (a - b).abs().flatten(1).sum(1))(x, torch.zeros(SHAPE))
    torch.testing.assert_close(out.loss, x.abs().flatten(1).sum(1))
    with pytest.raises(ValueError, match="per-sample"):
        DistillationLoss(distance=lambda a, b: (a - b).abs().mean())(x, x)
