"""Flash Diffusion distillation loss: the target is the teacher's ODE solve from the same noised input."""

from __future__ import annotations

import pytest
import torch

from flashdistill.flow import interpolate
from flashdistill.losses import DistillationLoss

SHAPE = (4, 2, 3, 3)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = 0.3 + 0.6 * torch.randn(SHAPE, generator=g, dtype=torch.float64)
    noise = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    t = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    return interpolate(x0, noise, t), t


def test_zero_when_student_equals_one_step_teacher(gaussian, make_cond):
    # One Euler step from t to 0 lands on x_t − t·v, which is exactly the student's x0 estimate.
    x_t, t = _inputs()
    out = DistillationLoss(teacher_steps=1)(gaussian(0.3, 0.6), gaussian(0.3, 0.6), x_t, t, make_cond(4))
    assert out.loss.shape == (4,) and out.loss.abs().max() < 1e-28


def test_target_is_the_teachers_ode_solution(gaussian, make_cond):
    x_t, t = _inputs(1)
    teacher, student = gaussian(0.3, 0.6), gaussian(0.0, 1.0)
    out = DistillationLoss(teacher_steps=400)(student, teacher, x_t, t, make_cond(4))
    with torch.no_grad():
        tb = t.reshape(-1, 1, 1, 1)
        x0_student = x_t - tb * student(x_t, t, None)
        exact = torch.cat([teacher.ode_map(x_t[b : b + 1], float(t[b]), 0.0) for b in range(4)])
        expected = (x0_student - exact).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.loss, expected, rtol=2e-2, atol=1e-6)
    assert expected.min() > 5e-4


def test_gradient_reaches_only_the_student(gaussian, make_cond):
    x_t, t = _inputs(2)
    teacher, student = gaussian(0.3, 0.6), gaussian(0.0, 1.0)
    x_t.requires_grad_(True)
    DistillationLoss(teacher_steps=2)(student, teacher, x_t, t, make_cond(4)).mean().backward()
    assert student.mu.grad.abs() > 0 and student.s.grad.abs() > 0
    assert all(p.grad is None for p in teacher.parameters()) and x_t.grad is None


def test_precomputed_target_and_errors(gaussian, make_cond):
    x_t, t = _inputs(3)
    teacher = gaussian(0.3, 0.6)
    out = DistillationLoss()(
        teacher, teacher, x_t, t, make_cond(4), x0_teacher=torch.zeros(SHAPE, dtype=torch.float64)
    )
    with torch.no_grad():
        x0_s = x_t - t.reshape(-1, 1, 1, 1) * teacher(x_t, t, None)
    torch.testing.assert_close(out.loss, x0_s.pow(2).mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="teacher_steps"):
        DistillationLoss(teacher_steps=0)
