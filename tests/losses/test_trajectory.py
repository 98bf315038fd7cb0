"""Trajectory guidance (SD3.5-Flash Eq. 4) and the teacher's segment solve, on exact Gaussian flows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flashdistill.losses import TrajectoryLoss, teacher_segment

SHAPE = (4, 2, 3, 3)


def _x(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_teacher_segment_converges_to_exact_ode(gaussian, make_cond):
    teacher, cond, x_ti = gaussian(0.3, 0.6), make_cond(4), _x()
    exact = teacher.ode_map(x_ti, 0.75, 0.5)
    errs = {
        k: (teacher_segment(teacher, x_ti, 0.75, 0.5, cond, k) - exact).abs().max().item() for k in (100, 200)
    }
    assert errs[200] < 1e-3
    # Euler is first order: doubling the substeps halves the error.
    assert 1.8 < errs[100] / errs[200] < 2.2


def test_teacher_segment_per_sample_times(gaussian, make_cond):
    teacher, cond, x_ti = gaussian(0.3, 0.6), make_cond(4), _x(1)
    t_i = torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64)
    t_j = t_i - 0.25
    out = teacher_segment(teacher, x_ti, t_i, t_j, cond, substeps=3)
    for b in range(4):
        one = teacher_segment(teacher, x_ti[b : b + 1], float(t_i[b]), float(t_j[b]), cond[b], substeps=3)
        torch.testing.assert_close(out[b : b + 1], one, rtol=1e-12, atol=1e-12)
    assert not out.requires_grad


def test_loss_zero_when_student_is_the_one_step_teacher(gaussian, make_cond):
    teacher, cond, x_ti = gaussian(0.3, 0.6), make_cond(4), _x(2)
    x_tj = teacher_segment(teacher, x_ti, 0.5, 0.25, cond, substeps=1)
    out = TrajectoryLoss()(gaussian(0.3, 0.6), x_ti, 0.5, 0.25, x_tj, cond)
    assert out.loss.shape == (4,) and out.loss.abs().max() < 1e-28


class Scaled(nn.Module):
    """A student ``v = a·v_teacher + b`` with learnable scalars."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher
        self.a = nn.Parameter(torch.tensor(0.8, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(0.1, dtype=torch.float64))

    def forward(self, x_t, t, cond):
        return self.a * self.teacher(x_t, t, cond) + self.b


def test_normalised_loss_is_velocity_mse(gaussian, make_cond):
    teacher, cond = gaussian(0.3, 0.6), make_cond(4)
    student = Scaled(teacher)
    x_ti = _x(3)
    t_i = torch.tensor([1.0, 0.75, 0.5, 0.75], dtype=torch.float64)
    t_j = torch.tensor([0.75, 0.5, 0.0, 0.25], dtype=torch.float64)
    x_tj = teacher_segment(teacher, x_ti, t_i, t_j, cond, substeps=8)
    norm = TrajectoryLoss("equal")(student, x_ti, t_i, t_j, x_tj, cond)
    raw = TrajectoryLoss("position")(student, x_ti, t_i, t_j, x_tj, cond)
    paper = TrajectoryLoss("t_i")(student, x_ti, t_i, t_j, x_tj, cond)
    torch.testing.assert_close(paper.loss, norm.loss * torch.as_tensor(t_i, dtype=norm.loss.dtype) ** 2)
    with torch.no_grad():
        v_avg = (x_tj - x_ti) / (t_j - t_i).reshape(-1, 1, 1, 1)
        vel_mse = (student(x_ti, t_i, cond) - v_avg).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(norm.loss.detach(), vel_mse, rtol=1e-12, atol=0)
    torch.testing.assert_close(raw.loss.detach(), vel_mse * (t_i - t_j) ** 2, rtol=1e-12, atol=0)
    assert vel_mse.min() > 1e-4


def test_gradient_reaches_only_the_student(gaussian, make_cond):
    teacher, cond = gaussian(0.3, 0.6), make_cond(4)
    student = Scaled(gaussian(0.3, 0.6))
    x_ti = _x(4).requires_grad_(True)
    x_tj = teacher_segment(teacher, x_ti, 0.75, 0.5, cond, substeps=4)
    TrajectoryLoss()(student, x_ti, 0.75, 0.5, x_tj, cond).mean().backward()
    assert student.a.grad.abs() > 0 and student.b.grad.abs() > 0
    assert x_ti.grad is None
    assert all(p.grad is None for p in teacher.parameters())


def test_rejects_backward_segments(gaussian, make_cond):
    x = _x()
    with pytest.raises(ValueError, match="t_j < t_i"):
        TrajectoryLoss()(gaussian(0, 1), x, 0.25, 0.5, x, make_cond(4))
    with pytest.raises(ValueError, match="substeps"):
        teacher_segment(gaussian(0, 1), x, 0.5, 0.25, make_cond(4), substeps=0)
