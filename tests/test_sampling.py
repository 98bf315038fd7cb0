"""Samplers on analytic velocity fields (float64) and the CFG wrapper."""

from __future__ import annotations

import pytest
import torch

from flashdistill.flow import interpolate, x0_from_v
from flashdistill.sampling import CFG, as_grid, euler_solve, renoise_update, sigmas_for_pipeline, student_sample
from flashdistill.types import Conditioning

M, S = 1.5, 0.3  # data ~ N(M, S^2) per dimension, noise ~ N(0, 1)


def gaussian_flow(x, t, cond):
    """Exact marginal velocity of the rectified flow between N(M, S^2) and N(0, 1)."""
    t = t.reshape(-1, *([1] * (x.ndim - 1)))
    mu, sd = (1 - t) * M, torch.sqrt((1 - t) ** 2 * S**2 + t**2)
    dsd = (-(1 - t) * S**2 + t) / sd
    return -M + dsd / sd * (x - mu)


def _cond(b):
    return Conditioning(torch.zeros(b, 1, 1, dtype=torch.float64), torch.zeros(b, 1, dtype=torch.float64))


def test_euler_converges_first_order():
    noise = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = M + S * noise
    errors = []
    for n in (8, 16, 32, 64):
        x0 = euler_solve(gaussian_flow, noise, torch.linspace(1, 0, n + 1, dtype=torch.float64), _cond(64))
        errors.append((x0 - exact).abs().max().item())
    assert errors[-1] < 0.04  # 64 steps: error ~2.8e-2 for this strongly curved flow (S = 0.3)
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(1.7 < r < 2.3 for r in ratios), ratios  # error halves when steps double: first order


def test_trajectory_and_student_sampler_agree():
    noise = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = [1.0, 0.75, 0.5, 0.25, 0.0]
    x0, traj = euler_solve(gaussian_flow, noise, grid, _cond(8), return_trajectory=True)
    y0, points, x0s = student_sample(gaussian_flow, noise, grid, _cond(8), return_trajectory=True)
    assert len(traj) == len(points) == 5 and len(x0s) == 4
    for a, b in zip(traj, points):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(x0, y0, rtol=0, atol=1e-12)
    torch.testing.assert_close(x0s[-1], y0, rtol=0, atol=1e-12)  # the last step lands on its own x0 estimate


def test_stochastic_mode_renoises():
    noise = torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grid = [1.0, 0.5, 0.0]
    det = student_sample(gaussian_flow, noise, grid, _cond(256))
    sto = student_sample(gaussian_flow, noise, grid, _cond(256), mode="stochastic",
                         generator=torch.Generator().manual_seed(0))
    assert (det - sto).abs().mean() > 0.01
    # both still produce the data distribution's mean
    assert abs(sto.mean().item() - M) < 0.1
    with pytest.raises(ValueError):
        student_sample(gaussian_flow, noise, grid, _cond(256), mode="ddim")


def test_renoise_update_by_hand():
    """The one stochastic update: fresh noise per non-final step, the x0 estimate at t = 0, stopped samples held."""
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
    fresh = torch.randn(3, 3, 1, 2, 2, generator=gen, dtype=torch.float64)
    grids = torch.tensor([[1.0, 0.6, 0.3, 0.0], [1.0, 0.6, 0.6, 0.6], [1.0, 0.6, 0.3, 0.3]], dtype=torch.float64)
    calls, seen = [], []

    def provider(j, x):
        calls.append(j)
        return fresh[:, j]

    out = euler_solve(gaussian_flow, noise, grids, _cond(3), step=renoise_update(provider, on_x0=seen.append))
    assert calls == [0, 1, 2] and len(seen) == 3  # the last step draws: not every sample lands at 0 there
    expected = []
    for b in range(3):
        x = noise[b : b + 1]
        for i in range(3):
            t, t_next = grids[b, i : i + 1], grids[b, i + 1 : i + 2]
            if t_next == t:
                continue  # a stopped sample keeps its point
            x0 = x0_from_v(x, gaussian_flow(x, t, _cond(1)), t)
            x = x0 if t_next == 0 else interpolate(x0, fresh[b : b + 1, i], t_next)
        expected.append(x)
    torch.testing.assert_close(out, torch.cat(expected), rtol=0, atol=1e-12)
    euler_solve(gaussian_flow, noise, [1.0, 0.5, 0.0], _cond(3), step=renoise_update(provider))
    assert calls == [0, 1, 2, 0]  # a shared grid ending at 0: the final step draws nothing


def test_cfg_wrapper_batched_formula():
    calls = []

    def model(x, t, cond):
        calls.append(x.shape[0])
        return x * 0 + cond.pooled[:, :1, None, None]

    cond = Conditioning(torch.zeros(3, 1, 1), torch.full((3, 1), 2.0))
    null = Conditioning(torch.zeros(1, 1, 1), torch.full((1, 1), 0.5))
    x, t = torch.zeros(3, 1, 2, 2), torch.ones(3)
    v = CFG(model, null, 4.0)(x, t, cond)
    assert calls == [6]  # one batched call for both branches
    torch.testing.assert_close(v, torch.full_like(x, 0.5 + 4.0 * (2.0 - 0.5)))
    CFG(model, null, 1.0)(x, t, cond)
    assert calls[-1] == 3  # scale <= 1 skips the unconditional branch
    # per-sample scales (Flash Diffusion's ω ~ U[ω_min, ω_max]): each sample gets its own, 1 included
    scale = torch.tensor([1.0, 3.0, 7.5])
    v = CFG(model, null, scale)(x, t, cond)
    assert calls[-1] == 6
    torch.testing.assert_close(v, (0.5 + scale * 1.5).reshape(3, 1, 1, 1).expand_as(x))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        CFG(model, null, torch.ones(2))(x, t, cond)


def test_grid_validation():
    with pytest.raises(ValueError, match="decreasing"):
        as_grid([0.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_grid([1.5, 0.0])
    assert sigmas_for_pipeline([1.0, 0.5, 0.0]) == [1.0, 0.5]
