"""VP denoisers (UNet, PixArt) driven on the flow path."""

from __future__ import annotations

import pytest
import torch

from flashdistill.flow import ddpm_alphas_cumprod, flow_to_vp, vp_alpha_sigma
from flashdistill.models.tiny import tiny_pixart, tiny_unet
from flashdistill.models.vp import PixArtAdapter, UNetAdapter, VPAdapter
from flashdistill.types import Conditioning

C = 0.7  # data distribution: a point mass at x0 = C, so the exact flow velocity is noise - C


class _Oracle(VPAdapter):
    """Returns the exact epsilon / v for the point-mass data, at the (integer) timestep it is given."""

    def __init__(self, prediction_type):
        super().__init__(torch.nn.Linear(1, 1).double(), ddpm_alphas_cumprod(1000), prediction_type)

    def _net(self, x_vp, tau, cond):
        alpha, sigma = vp_alpha_sigma(self.alphas_cumprod)
        idx = tau.round().long()
        a, s = alpha[idx].view(-1, 1, 1, 1), sigma[idx].view(-1, 1, 1, 1)
        eps = (x_vp - a * C) / s
        return eps if self.prediction_type == "epsilon" else a * eps - s * C


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_exact_prediction_gives_exact_flow_velocity(prediction_type):
    ac = ddpm_alphas_cumprod(1000)
    alpha, sigma = vp_alpha_sigma(ac)
    idx = torch.tensor([5, 100, 500, 900])
    t = (sigma / (alpha + sigma))[idx]  # flow times that sit exactly on discrete VP timesteps
    noise = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_t = (1 - t.view(-1, 1, 1, 1)) * C + t.view(-1, 1, 1, 1) * noise
    cond = Conditioning(torch.zeros(4, 1, 1, dtype=torch.float64))
    v = _Oracle(prediction_type)(x_t, t, cond)
    torch.testing.assert_close(v, noise - C, rtol=0, atol=1e-8)


def test_flow_to_vp_matches_unit_variance_path():
    x0 = torch.full((1, 1, 1, 1), C, dtype=torch.float64)
    _, alpha, sigma = flow_to_vp(x0, torch.tensor([0.3], dtype=torch.float64))
    assert abs(float(alpha**2 + sigma**2) - 1) < 1e-12


def _tiny_unet_case(prediction_type):
    """A tiny UNet, its scheduler, its adapter, a latent batch and a conditioning."""
    unet, scheduler = tiny_unet(prediction_type)
    model = UNetAdapter.from_scheduler(unet.eval(), scheduler)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = Conditioning(torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1)))
    return unet, scheduler, model, x, cond


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_tiny_unet_adapter_runs_and_taps_mid_block(prediction_type):
    _, _, model, x, cond = _tiny_unet_case(prediction_type)
    with torch.no_grad():
        v = model(x, torch.tensor([0.9, 0.2]), cond)
        feats = model.features(x, torch.tensor([0.9, 0.2]), cond)
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert feats[0].shape == (2, 4 * 4, 32)  # mid block at 8/2 = 4 px, 32 channels


def test_tiny_pixart_adapter_runs_and_taps_blocks():
    net, scheduler = tiny_pixart()
    model = PixArtAdapter.from_scheduler(net.eval(), scheduler)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = Conditioning(torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        v = model(x, torch.tensor([0.9, 0.2]), cond)
        feats = model.features(x, torch.tensor([0.9, 0.2]), cond, blocks=[0, 1])
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert [f.shape for f in feats] == [(2, 16, 16)] * 2
    with pytest.raises(ValueError):
        model.features(x, torch.tensor([0.9, 0.2]), cond, blocks=[3])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_t_one_is_finite_and_is_the_last_index_prediction(prediction_type):
    unet, scheduler, model, x, cond = _tiny_unet_case(prediction_type)
    with torch.no_grad():
        v = model(x, torch.ones(2), cond)
        out = unet(x, torch.full((2,), 999.0), encoder_hidden_states=cond.prompt_embeds).sample
    assert torch.isfinite(v).all()
    a, s = scheduler.alphas_cumprod[999].sqrt(), (1 - scheduler.alphas_cumprod[999]).sqrt()
    x0_999 = (x - s * out) / a if prediction_type == "epsilon" else a * x - s * out  # the stock step's x0
    torch.testing.assert_close(x - v, x0_999, rtol=1e-4, atol=1e-4)  # x0 = x_t - t·v at t = 1
    with torch.no_grad():  # beyond either end of the schedule: finite, not index-clamped nonsense
        for t in (0.0, 1e-4, 0.97, 0.999):
            assert torch.isfinite(model(x, torch.full((2,), t), cond)).all()
