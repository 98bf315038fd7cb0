"""Flow matching: exact value for given (t, noise), seeded draws, gradients, the Gaussian optimum."""

from __future__ import annotations

import torch
from torch import nn

from flashdistill.losses import FlowMatchingLoss
from flashdistill.timesteps import Uniform


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x_t, t, cond):
        return self.w * x_t + t.reshape(-1, 1, 1, 1)


def _x0(b=4, seed=0):
    return torch.randn(b, 2, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_value_for_given_t_and_noise(make_cond):
    x0, noise = _x0(), _x0(seed=1)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=torch.float64)
    model = Linear()
    out = FlowMatchingLoss(Uniform())(model, x0, make_cond(4), noise=noise, t=t)
    tb = t.reshape(-1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * noise
    expected = (0.5 * x_t + tb - (noise - x0)).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=0)
    assert out.loss.shape == (4,) and set(out.logs) == {"fm/loss", "fm/mse"}


def test_seeded_draws_are_reproducible(make_cond):
    loss = FlowMatchingLoss(Uniform())
    a = loss(Linear(), _x0(), make_cond(4), generator=torch.Generator().manual_seed(7)).loss
    b = loss(Linear(), _x0(), make_cond(4), generator=torch.Generator().manual_seed(7)).loss
    c = loss(Linear(), _x0(), make_cond(4), generator=torch.Generator().manual_seed(8)).loss
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_weighting_and_gradients(make_cond):
    x0 = _x0().requires_grad_(True)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=torch.float64)
    noise = _x0(seed=2)
    plain = FlowMatchingLoss(Uniform())(Linear(), x0, make_cond(4), noise=noise, t=t).loss
    model = Linear()
    weighted = FlowMatchingLoss(Uniform(), weighting=lambda t: 1 / t)(
        model, x0, make_cond(4), noise=noise, t=t
    )
    torch.testing.assert_close(weighted.loss, plain / t)
    weighted.mean().backward()
    assert model.w.grad.abs() > 0
    assert x0.grad is None  # the data / student sample is a target: no gradient reaches it


def test_exact_velocity_minimises_the_loss(gaussian, make_cond):
    x0 = 0.5 + 0.7 * _x0(b=2048, seed=3)
    g = torch.Generator().manual_seed(4)
    t = Uniform(0.05, 0.95)(2048, generator=g).double()
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    loss = FlowMatchingLoss(Uniform())
    cond = make_cond(2048)
    best = loss(gaussian(0.5, 0.7), x0, cond, noise=noise, t=t).mean()
    for mu, s in [(0.8, 0.7), (0.5, 1.0), (0.2, 0.5)]:
        assert loss(gaussian(mu, s), x0, cond, noise=noise, t=t).mean() > best + 1e-3
