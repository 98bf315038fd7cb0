"""Timestep samplers and the student grid."""

from __future__ import annotations

import pytest
import torch

from flashdistill.timesteps import (
    FLASH_MODE_WEIGHTS,
    FlashMixture,
    GridSampler,
    LogitNormal,
    Restricted,
    Shifted,
    Uniform,
    student_grid,
)


def test_student_grids():
    assert student_grid(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert student_grid(2).tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError):
        student_grid(0)


def test_continuous_samplers_ranges():
    g = torch.Generator().manual_seed(0)
    for sampler in (Uniform(), LogitNormal(), Shifted(LogitNormal(), 3.0), Restricted(Uniform(), 0.5, 1.0)):
        t = sampler(4096, generator=g)
        assert t.shape == (4096,) and t.min() >= 0 and t.max() <= 1
    assert Restricted(Uniform(), 0.5, 1.0)(4096, generator=g).min() >= 0.5
    # the shift moves mass toward noise
    assert Shifted(LogitNormal(), 3.0)(4096, generator=g).mean() > LogitNormal()(4096, generator=g).mean() + 0.1


def test_grid_sampler_split_ranges():
    grid = student_grid(4)
    hi = GridSampler(grid, t_range=(0.5, 1.0))
    lo = GridSampler(grid, t_range=(0.0, 0.5))
    assert sorted(hi.allowed.tolist()) == [0, 1]  # steps starting at 1, .75
    assert sorted(lo.allowed.tolist()) == [2, 3]  # steps starting at .5, .25
    assert set(hi(256, generator=torch.Generator().manual_seed(0)).tolist()) == {0, 1}


def test_grid_sampler_step_weights():
    """step_weights: frequencies follow the weights over the kept steps; weight 0 is never drawn; the inverse CDF
    maps uniforms exactly; a bad weight list is refused."""
    grid = student_grid(4)
    s = GridSampler(grid, weights=[3.0, 1.0, 0.0, 4.0])
    assert s.allowed.tolist() == [0, 1, 3]
    idx = s(40_000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=4).double() / len(idx)
    assert freq[2] == 0 and torch.allclose(freq[[0, 1, 3]], torch.tensor([3 / 8, 1 / 8, 4 / 8], dtype=torch.float64),
                                           atol=0.01)
    u = torch.tensor([0.0, 0.374, 0.376, 0.499, 0.501, 0.999])
    assert s.pick(u).tolist() == [0, 0, 1, 1, 3, 3]
    # with a t range, the weights are renormalised over what the range keeps
    hi = GridSampler(grid, t_range=(0.5, 1.0), weights=[1.0, 3.0, 5.0, 5.0])
    assert hi.pick(torch.tensor([0.2, 0.3])).tolist() == [0, 1]
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]):
        with pytest.raises(ValueError):
            GridSampler(grid, weights=bad)


@pytest.mark.parametrize("phase", range(len(FLASH_MODE_WEIGHTS)))
def test_flash_mixture_mass_on_modes(phase):
    """Eq. 7 as one mixture: each mode's share of the draws is its weight times its (edge-truncated) mass."""
    K = 32
    dist = FlashMixture(K=K, phase=phase)
    torch.testing.assert_close(dist.probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    w = torch.tensor(FLASH_MODE_WEIGHTS[phase], dtype=torch.float64)
    # a Gaussian of variance 0.5 on the integer grid: the mode at K loses its upper half (one-sided)
    one = torch.exp(-torch.arange(-4, 5, dtype=torch.float64) ** 2)  # exp(-d²/(2·0.5))
    mass = torch.tensor([one.sum(), one.sum(), one.sum(), one[:5].sum()])
    expected = w * mass / (w * mass).sum()
    t = dist(200_000, generator=torch.Generator().manual_seed(phase))
    idx = (t * K).round().long()  # 1..K
    for k, mode in enumerate((K // 4, K // 2, 3 * K // 4, K)):
        near = ((idx - mode).abs() <= 2).float().mean().item()
        assert abs(near - expected[k].item()) < 0.01, (mode, near, expected[k].item())
        assert (idx == mode).float().mean().item() >= 0.5 * expected[k].item()  # sharp: 56% of a mode on its own point


def test_flash_mixture_warmup_on_least_noisy_modes():
    """The warm-up trains only t <= 0.5 (the modes at 1/4 and 1/2); the last phase puts the most mass at t = 1."""
    dist = FlashMixture(K=16, phase=0)
    t = dist(50_000, generator=torch.Generator().manual_seed(1))
    assert (t > 0.5 + 1.5 / 16).float().mean() < 0.01  # beyond the first neighbour of the mode at 1/2: ~e^-4
    assert (t <= 0.5).float().mean() > 0.85 and abs((t <= 0.35).float().mean().item() - 0.5) < 0.02
    dist.set_phase(3)
    late = dist(50_000, generator=torch.Generator().manual_seed(1))
    assert (late == 1.0).float().mean() > 0.2 and (late == 1.0).float().mean() > (late == 0.25).float().mean()
    assert dist.sample_index(8, generator=torch.Generator().manual_seed(0)).dtype == torch.long
    with pytest.raises(ValueError):
        FlashMixture(K=10)


def test_flash_mixture_maps_fractions_through_to_flow():
    """For VP teachers the modes are fractions of the DDPM index range, mapped to flow time by the adapter."""
    to_flow = lambda f: 0.9 * f**0.5  # noqa: E731 - any increasing map
    dist = FlashMixture(K=8, phase=2, to_flow=to_flow)
    torch.testing.assert_close(dist.timesteps, to_flow(torch.arange(1, 9, dtype=torch.float64) / 8))
    t = dist(1000, generator=torch.Generator().manual_seed(0))
    assert set(t.double().round(decimals=5).tolist()) <= set(dist.timesteps.round(decimals=5).tolist())
    with pytest.raises(ValueError, match="increasing"):
        FlashMixture(K=8, to_flow=lambda f: 1 - f)


def test_flash_mixture_inverse_cdf_and_grid():
    dist = FlashMixture(K=8, phase=3, to_flow=lambda f: f**0.5)
    j = dist.index_from_uniform(torch.rand(200_000, generator=torch.Generator().manual_seed(0)))
    assert j.min() >= 1 and j.max() <= 8
    freq = torch.bincount(j - 1, minlength=8).double() / len(j)
    torch.testing.assert_close(freq, dist.probs, atol=5e-3, rtol=0)
    assert dist.grid[0] == 0 and torch.equal(dist.grid[1:], dist.timesteps)
