"""Adversarial losses: closed-form values per kind, per-head and per-level averaging, gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flashdistill.losses import ADV_KINDS, DiscriminatorAdvLoss, GeneratorAdvLoss

L, B = 2, 3


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(L * B, generator=g, dtype=torch.float64) for _ in range(2)]


GEN = {
    "non_saturating": lambda f: F.softplus(-f),
    "lsgan": lambda f: 0.5 * (f - 1) ** 2,
    "hinge": lambda f: -f,
}
DISC = {
    "non_saturating": lambda r, f: F.softplus(-r) + F.softplus(f),
    "lsgan": lambda r, f: 0.5 * (r - 1) ** 2 + 0.5 * f**2,
    "hinge": lambda r, f: F.relu(1 - r) + F.relu(1 + f),
}


@pytest.mark.parametrize("kind", ADV_KINDS)
def test_generator_values_fold_levels_then_heads(kind):
    fake = _logits(0)
    out = GeneratorAdvLoss(kind)(fake, num_levels=L)
    # Head h, sample b: mean over levels of rows b and B + b (level-major layout); then mean over heads.
    per_head = [GEN[kind](f).reshape(L, B).mean(0) for f in fake]
    expected = (per_head[0] + per_head[1]) / 2
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=0)
    assert out.loss.shape == (B,)


@pytest.mark.parametrize("kind", ADV_KINDS)
def test_discriminator_values(kind):
    real, fake = _logits(1), _logits(2)
    out = DiscriminatorAdvLoss(kind)(real, fake, num_levels=L)
    expected = sum(DISC[kind](r, f).reshape(L, B).mean(0) for r, f in zip(real, fake)) / 2
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=0)
    assert {"adv_d/loss", "adv_d/acc", "adv_d/head0", "adv_d/head1"} <= set(out.logs)


def test_non_saturating_generator_gradient():
    fake = [torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)]
    GeneratorAdvLoss()(fake).loss.sum().backward()
    # d softplus(-l) / dl = -sigmoid(-l): non-vanishing where the discriminator is sure the sample is fake.
    torch.testing.assert_close(fake[0].grad, -torch.sigmoid(-fake[0].detach()))
    assert fake[0].grad[0] < -0.85


def test_perfect_discriminator_has_low_loss_and_full_accuracy():
    real = [torch.full((4,), 20.0, dtype=torch.float64)]
    fake = [torch.full((4,), -20.0, dtype=torch.float64)]
    out = DiscriminatorAdvLoss()(real, fake)
    assert out.loss.max() < 1e-8 and out.logs["adv_d/acc"] == 1.0
    assert DiscriminatorAdvLoss()(fake, real).logs["adv_d/acc"] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        GeneratorAdvLoss("wgan")
    with pytest.raises(ValueError, match="2 real heads but 1 fake"):
        DiscriminatorAdvLoss()(_logits(0), _logits(0)[:1])
    with pytest.raises(ValueError, match="head 0"):
        DiscriminatorAdvLoss()([torch.zeros(6)], [torch.zeros(4)])
    with pytest.raises(ValueError, match="L=4"):
        GeneratorAdvLoss()([torch.zeros(6)], num_levels=4)
    with pytest.raises(ValueError, match="at least one head"):
        GeneratorAdvLoss()([])
