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


@pytest.mark.parametrize("phase", range(len(FLASH_MODE_WEIGHTS)))
def test_flash_mixture_mass_on_modes(phase):
    K = 32
    dist = FlashMixture(K=K, phase=phase)
    torch.testing.assert_close(dist.probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    t = dist(200_000, generator=torch.Generator().manual_seed(phase))
    idx = (t * K).round().long()  # 1..K
    for mode, w in zip((K // 4, K // 2, 3 * K // 4, K), FLASH_MODE_WEIGHTS[phase]):
        near = ((idx - mode).abs() <= 1).float().mean().item()
        # sigma = sqrt(.5) index units: ±1 index holds ~0.96 of a mode's mass (~0.78 for the edge mode at K,
        # which is one-sided but renormalised)
        assert abs(near - w) < 0.03 + 0.05 * w, (mode, near, w)
    far = torch.ones_like(idx, dtype=torch.bool)
    for mode in (K // 4, K // 2, 3 * K // 4, K):
        far &= (idx - mode).abs() > 2
    assert far.float().mean() < 0.005


def test_flash_mixture_warmup_only_noisy_modes():
    dist = FlashMixture(K=16, phase=0)
    t = dist(50_000, generator=torch.Generator().manual_seed(1))
    assert (t < 0.6).float().mean() < 0.002
    dist.set_phase(3)
    assert (dist(50_000, generator=torch.Generator().manual_seed(1)) < 0.3).float().mean() > 0.3
    with pytest.raises(ValueError):
        FlashMixture(K=10)
