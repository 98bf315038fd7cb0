"""Property tests of the flow maths in float64."""

from __future__ import annotations

import torch

from flashdistill import flow

G = torch.Generator().manual_seed(0)


def _batch(b=16):
    x0 = torch.randn(b, 3, 4, 4, generator=G, dtype=torch.float64)
    noise = torch.randn(b, 3, 4, 4, generator=G, dtype=torch.float64)
    t = torch.rand(b, generator=G, dtype=torch.float64) * 0.98 + 0.01
    return x0, noise, t


def test_path_and_conversions_round_trip():
    x0, noise, t = _batch()
    x_t = flow.interpolate(x0, noise, t)
    v = flow.velocity(x0, noise)
    torch.testing.assert_close(flow.x0_from_v(x_t, v, t), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.noise_from_v(x_t, v, t), noise, rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.v_from_x0(x_t, x0, t), v, rtol=0, atol=1e-10)
    torch.testing.assert_close(flow.v_from_noise(x_t, noise, t), v, rtol=0, atol=1e-10)
    assert torch.equal(flow.interpolate(x0, noise, 0.0), x0)
    assert torch.equal(flow.interpolate(x0, noise, 1.0), noise)


def test_euler_step_is_renoising_with_predicted_noise():
    x0, noise, t = _batch()
    x_t = flow.interpolate(x0, noise, t)
    v = torch.randn_like(x0)  # any velocity: the identity holds for predictions, not just the truth
    t_next = t * 0.5
    x0_hat, noise_hat = flow.x0_noise_from_v(x_t, v, t)
    torch.testing.assert_close(flow.euler_step(x_t, v, t, t_next),
                               flow.interpolate(x0_hat, noise_hat, t_next), rtol=0, atol=1e-12)


def test_shift_inverse():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    for s in (1.0, 3.0, 0.5, 7.3):
        torch.testing.assert_close(flow.unshift_t(flow.shift_t(t, s), s), t, rtol=0, atol=1e-12)
    assert flow.shift_t(torch.tensor(0.5, dtype=torch.float64), 3.0) == 0.75


def test_vp_flow_mapping_consistent():
    x0, noise, t = _batch()
    x_flow = flow.interpolate(x0, noise, t)
    x_vp, alpha, sigma = flow.flow_to_vp(x_flow, t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), rtol=0, atol=1e-12)
    torch.testing.assert_close(x_vp, alpha * x0 + sigma * noise, rtol=0, atol=1e-12)  # a genuine VP point
    back, t_back = flow.vp_to_flow(x_vp, alpha, sigma)
    torch.testing.assert_close(back, x_flow, rtol=0, atol=1e-12)
    torch.testing.assert_close(t_back.flatten(), t, rtol=0, atol=1e-12)


def test_vp_predictions_map_to_flow_velocity():
    x0, noise, t = _batch()
    x_flow = flow.interpolate(x0, noise, t)
    x_vp, alpha, sigma = flow.flow_to_vp(x_flow, t)
    v_true = flow.velocity(x0, noise)
    torch.testing.assert_close(flow.eps_to_v_flow(x_flow, noise, t), v_true, rtol=0, atol=1e-10)
    v_vp = alpha * noise - sigma * x0  # the v-prediction target of a VP model
    torch.testing.assert_close(flow.vpred_to_v_flow(x_vp, v_vp, alpha, sigma, t), v_true, rtol=0, atol=1e-10)
    torch.testing.assert_close(flow.v_flow_to_eps(x_flow, v_true, t), noise, rtol=0, atol=1e-10)


def test_vp_timestep_lookup():
    ac = flow.ddpm_alphas_cumprod(1000)
    alpha, sigma = flow.vp_alpha_sigma(ac)
    idx = torch.tensor([0, 10, 499, 998], dtype=torch.float64)
    t = (sigma / (alpha + sigma))[idx.long()]
    torch.testing.assert_close(flow.vp_t_from_flow_t(t, ac), idx, rtol=0, atol=1e-6)
    assert torch.all(ac[1:] < ac[:-1])
