"""Closed-form toys for the loss tests: exact velocity fields of Gaussian data, and a tiny conditioning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flashdistill.flow import bcast
from flashdistill.types import Conditioning


class GaussianVelocity(nn.Module):
    """The exact flow velocity of data ``x0 ~ N(mu, s² I)`` (independent coordinates).

    With ``x_t = (1 − t)·x0 + t·noise``: ``E[x0 | x_t] = mu + (1 − t)·s²·(x_t − (1 − t)·mu) / σ_t²`` where
    ``σ_t² = (1 − t)²·s² + t²``, and ``v = (x_t − E[x0 | x_t]) / t``. ``mu`` and ``s`` are parameters so tests
    can check that no gradient reaches them.
    """

    def __init__(self, mu: float, s: float, dtype=torch.float64):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(mu, dtype=dtype))
        self.s = nn.Parameter(torch.tensor(s, dtype=dtype))
        self.calls = 0

    def posterior_mean(self, x_t: torch.Tensor, t) -> torch.Tensor:
        t = bcast(t, x_t)
        mu, s2 = self.mu.to(x_t.dtype), self.s.to(x_t.dtype) ** 2
        sigma2 = (1 - t) ** 2 * s2 + t**2
        return mu + (1 - t) * s2 * (x_t - (1 - t) * mu) / sigma2

    def ode_map(self, x_a: torch.Tensor, t_a: float, t_b: float) -> torch.Tensor:
        """Exact probability-flow ODE map from ``t_a`` to ``t_b`` (standardised coordinates are kept)."""
        mu, s2 = self.mu.detach(), self.s.detach() ** 2
        sd_a = ((1 - t_a) ** 2 * s2 + t_a**2).sqrt()
        sd_b = ((1 - t_b) ** 2 * s2 + t_b**2).sqrt()
        return (1 - t_b) * mu + sd_b * (x_a - (1 - t_a) * mu) / sd_a

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.calls += 1
        return (x_t - self.posterior_mean(x_t, t)) / bcast(t, x_t)


@pytest.fixture
def gaussian():
    """Factory: ``gaussian(mu, s, dtype=float64) -> GaussianVelocity``."""
    return GaussianVelocity


@pytest.fixture
def make_cond():
    """Factory: ``make_cond(B) -> Conditioning`` with dummy prompt embeddings (the toys ignore it)."""
    return lambda b, dtype=torch.float64: Conditioning(prompt_embeds=torch.zeros(b, 2, 3, dtype=dtype))
