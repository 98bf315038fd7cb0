"""DMD: the autograd gradient on the student's sample equals the stated formula (closed-form Gaussians)."""

from __future__ import annotations

import pytest
import torch

from flashdistill.flow import interpolate
from flashdistill.losses import DMDLoss, dmd_gradient, dmd_normaliser, renoised_point
from flashdistill.timesteps import Uniform

SHAPE = (3, 2, 4, 4)
D = 2 * 4 * 4


def _posterior_mean(x_t, t, mu, s):
    """E[x0 | x_t] for x0 ~ N(mu, s²), written out independently of the model class."""
    t = t.reshape(-1, 1, 1, 1)
    return mu + (1 - t) * s**2 * (x_t - (1 - t) * mu) / ((1 - t) ** 2 * s**2 + t**2)


def _setup(gaussian, make_cond, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float64).requires_grad_(True)
    noise = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    teacher, proxy = gaussian(0.5, 0.7), gaussian(-0.2, 1.3)
    return x0, noise, t, teacher, proxy, make_cond(SHAPE[0])


def _expected_grad(x0, x_t, t, normalise=True):
    x0_real = _posterior_mean(x_t, t, 0.5, 0.7)
    x0_fake = _posterior_mean(x_t, t, -0.2, 1.3)
    n = (x0 - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True) if normalise else 1.0
    return (x0_fake - x0_real) / n / D


def test_gradient_equals_formula_with_timestep_sharing(gaussian, make_cond):
    x0, noise, t, teacher, proxy, cond = _setup(gaussian, make_cond)
    # Shared timestep: x_t hangs on the student's graph; the loss must cut it (gradient only through x0).
    x_t = interpolate(x0, noise, t)
    out = DMDLoss()(teacher, proxy, x0, x_t, t, cond)
    assert out.loss.shape == (3,) and out.loss.dtype == torch.float64
    out.loss.sum().backward()
    expected = _expected_grad(x0.detach(), x_t.detach(), t)
    torch.testing.assert_close(x0.grad, expected, rtol=1e-12, atol=1e-15)
    assert expected.abs().max() > 1e-3  # the test is not comparing zeros


def test_gradient_equals_formula_with_renoising(gaussian, make_cond):
    x0, noise, _, teacher, proxy, cond = _setup(gaussian, make_cond, seed=1)
    x_t, t = renoised_point(x0, Uniform(0.02, 0.98), generator=torch.Generator().manual_seed(3), noise=noise)
    assert x_t.grad_fn is None and not x_t.requires_grad and t.shape == (3,)
    torch.testing.assert_close(x_t, interpolate(x0.detach(), noise, t))
    DMDLoss()(teacher, proxy, x0, x_t, t, cond).loss.sum().backward()
    torch.testing.assert_close(x0.grad, _expected_grad(x0.detach(), x_t, t), rtol=1e-12, atol=1e-15)


def test_unnormalised_gradient_and_mean_reduction(gaussian, make_cond):
    x0, noise, t, teacher, proxy, cond = _setup(gaussian, make_cond, seed=2)
    x_t = interpolate(x0.detach(), noise, t)
    DMDLoss(normalise=False)(teacher, proxy, x0, x_t, t, cond).mean().backward()
    # LossOutput.mean() averages over the batch too: g / (B·C·H·W), DMD2's F.mse_loss scale.
    expected = _expected_grad(x0.detach(), x_t, t, normalise=False) / SHAPE[0]
    torch.testing.assert_close(x0.grad, expected, rtol=1e-12, atol=1e-15)


def test_no_gradient_reaches_teacher_or_proxy(gaussian, make_cond):
    x0, noise, t, teacher, proxy, cond = _setup(gaussian, make_cond)
    x_t = interpolate(x0, noise, t)
    DMDLoss()(teacher, proxy, x0, x_t, t, cond).loss.sum().backward()
    params = [*teacher.parameters(), *proxy.parameters()]
    assert all(p.requires_grad for p in params)
    assert all(p.grad is None for p in params)
    assert teacher.calls == 1 and proxy.calls == 1


def test_identical_scores_give_zero_gradient(gaussian, make_cond):
    x0, noise, t, teacher, _, cond = _setup(gaussian, make_cond)
    x_t = interpolate(x0.detach(), noise, t)
    DMDLoss()(teacher, gaussian(0.5, 0.7), x0, x_t, t, cond).loss.sum().backward()
    assert x0.grad.abs().max() == 0


def test_normaliser_is_fp32_for_bf16_inputs():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(SHAPE, generator=g).to(torch.bfloat16)
    x0_real = torch.randn(SHAPE, generator=g).to(torch.bfloat16)
    x0_fake = torch.randn(SHAPE, generator=g).to(torch.bfloat16)
    n = dmd_normaliser(x0, x0_real)
    assert n.dtype == torch.float32 and n.shape == (3,)
    ref = (x0.double() - x0_real.double()).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(n.double(), ref, rtol=1e-6, atol=0)
    direction, n2 = dmd_gradient(x0, x0_real, x0_fake)
    assert direction.dtype == torch.float32 and n2.dtype == torch.float32
    ref_dir = (x0_fake.double() - x0_real.double()) / ref.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(direction.double(), ref_dir, rtol=1e-6, atol=1e-7)


def test_bf16_end_to_end(gaussian, make_cond):
    x0, noise, t, teacher, proxy, _ = _setup(gaussian, make_cond)
    x0_bf = x0.detach().to(torch.bfloat16).requires_grad_(True)
    x_t = interpolate(x0_bf.detach(), noise.to(torch.bfloat16), t.to(torch.bfloat16))
    out = DMDLoss()(teacher, proxy, x0_bf, x_t, t.to(torch.bfloat16), make_cond(3, torch.bfloat16))
    assert out.loss.dtype == torch.float32
    out.loss.sum().backward()
    assert x0_bf.grad.dtype == torch.bfloat16
    # Reference from the same bf16 model outputs, everything after them in float64: the loss adds no error
    # beyond the final rounding of the gradient to bf16.
    t_bf = t.to(torch.bfloat16)
    with torch.no_grad():
        v_real, v_fake = teacher(x_t, t_bf, None).double(), proxy(x_t, t_bf, None).double()
    t64 = t_bf.double().reshape(-1, 1, 1, 1)
    x0_real, x0_fake = x_t.double() - t64 * v_real, x_t.double() - t64 * v_fake
    n = (x0_bf.detach().double() - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = (x0_fake - x0_real) / n / D
    torch.testing.assert_close(x0_bf.grad.double(), expected, rtol=8e-3, atol=1e-7)


def test_normaliser_epsilon_guards_division():
    x0 = torch.ones(SHAPE, dtype=torch.float64)
    direction, n = dmd_gradient(x0, x0.clone(), x0 + 1e-3, eps=1e-5)
    assert torch.all(n == 1e-5)
    assert torch.isfinite(direction).all()
    torch.testing.assert_close(direction, torch.full(SHAPE, 1e-3 / 1e-5, dtype=torch.float64))


def test_scalar_t_is_broadcast(gaussian, make_cond):
    x0, noise, _, teacher, proxy, cond = _setup(gaussian, make_cond)
    x_t = interpolate(x0.detach(), noise, 0.5)
    a = DMDLoss()(teacher, proxy, x0, x_t, 0.5, cond).loss
    b = DMDLoss()(teacher, proxy, x0, x_t, torch.full((3,), 0.5, dtype=torch.float64), cond).loss
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bad", [0.0, 1.0])
def test_renoised_point_respects_sampler_bounds(bad):
    x0 = torch.zeros(5, 1, 2, 2)
    _, t = renoised_point(x0, Uniform(0.02, 0.98), generator=torch.Generator().manual_seed(0))
    assert torch.all((t >= 0.02) & (t <= 0.98)) and not torch.any(t == bad)


def test_descent_moves_the_student_distribution_to_the_teacher(gaussian, make_cond):
    # Student x0 = m + z (z ~ N(0, 1)); teacher N(0.5, 1); proxy = the student's exact distribution N(m, 1).
    m = torch.nn.Parameter(torch.tensor(-1.0, dtype=torch.float64))
    teacher, loss, g = gaussian(0.5, 1.0), DMDLoss(), torch.Generator().manual_seed(0)
    for _ in range(60):
        x0 = m + torch.randn(64, 1, 2, 2, generator=g, dtype=torch.float64)
        x_t, t = renoised_point(x0, Uniform(0.02, 0.98), generator=g)
        proxy = gaussian(m.item(), 1.0)
        m.grad = None
        loss(teacher, proxy, x0, x_t, t, make_cond(64)).mean().backward()
        with torch.no_grad():
            m -= 0.1 * m.grad
    assert abs(m.item() - 0.5) < 0.05  # starts 1.5 away
