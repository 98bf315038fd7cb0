r"""Rectified-flow maths: the one place the time convention is written down.

Convention (SD3 / diffusers):

* ``t \in [0, 1]``; ``t = 1`` is pure noise, ``t = 0`` is data.
* ``x_t = (1 - t) \cdot x0 + t \cdot noise``.
* velocity ``v = dx_t/dt = noise - x0``.
* Euler step from ``t`` to ``t'``: ``x_{t'} = x_t + (t' - t) \cdot v``. With ``v`` from a model this equals
  re-noising the x0 estimate with the noise estimate at level ``t'``.

Variance-preserving (VP) models use ``x_vp = alpha \cdot x0 + sigma \cdot noise``. Dividing by ``alpha + sigma``
puts the same point on the flow path at ``t = sigma / (alpha + sigma)``; adapters use :func:`vp_to_flow` and
:func:`flow_to_vp` so that losses and samplers only ever see the convention above.

Every function is pure, broadcasts ``t`` over the trailing dimensions of ``x`` and works in any float dtype.
"""

from __future__ import annotations

import torch

__all__ = [
    "bcast",
    "interpolate",
    "velocity",
    "x0_from_v",
    "noise_from_v",
    "v_from_x0",
    "v_from_noise",
    "x0_noise_from_v",
    "euler_step",
    "renoise",
    "shift_t",
    "unshift_t",
    "ddpm_alphas_cumprod",
    "vp_alpha_sigma",
    "flow_to_vp",
    "vp_to_flow",
    "vp_t_from_flow_t",
    "eps_to_v_flow",
    "vpred_to_v_flow",
    "v_flow_to_eps",
]


def bcast(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Return ``t`` shaped ``(B, 1, ..., 1)`` (or a scalar tensor) to broadcast against ``x`` ``(B, ...)``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """The point ``x_t`` on the straight path from data ``x0`` (t=0) to ``noise`` (t=1)."""
    t = bcast(t, x0)
    return (1 - t) * x0 + t * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Target velocity of the path: ``noise - x0``."""
    return noise - x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """Data estimate from a velocity: ``x0 = x_t - t·v``."""
    return x_t - bcast(t, x_t) * v


def noise_from_v(x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """Noise estimate from a velocity: ``noise = x_t + (1 - t)·v``."""
    return x_t + (1 - bcast(t, x_t)) * v


def x0_noise_from_v(x_t: torch.Tensor, v: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    return x0_from_v(x_t, v, t), noise_from_v(x_t, v, t)


def v_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
    """Velocity implied by an x0 estimate: ``v = (x_t - x0) / t`` (undefined at t = 0)."""
    return (x_t - x0) / bcast(t, x_t)


def v_from_noise(x_t: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """Velocity implied by a noise estimate: ``v = (noise - x_t) / (1 - t)`` (undefined at t = 1)."""
    return (noise - x_t) / (1 - bcast(t, x_t))


def euler_step(x_t: torch.Tensor, v: torch.Tensor, t, t_next) -> torch.Tensor:
    """One Euler step of the ODE ``dx/dt = v`` from ``t`` to ``t_next`` (scalars or ``(B,)``)."""
    return x_t + (bcast(t_next, x_t) - bcast(t, x_t)) * v


def renoise(x0: torch.Tensor, t, noise: torch.Tensor | None = None, generator=None) -> torch.Tensor:
    """Put an x0 estimate back on the path at level ``t`` with fresh (or given) noise."""
    if noise is None:
        on = generator.device if generator is not None else x0.device  # a generator fills its own device only
        noise = torch.randn(x0.shape, generator=generator, device=on, dtype=x0.dtype).to(x0.device)
    return interpolate(x0, noise, t)


def shift_t(t, shift: float):
    """SD3 resolution shift ``t' = s·t / (1 + (s - 1)·t)`` (``s > 1`` spends more time at high noise)."""
    return shift * t / (1 + (shift - 1) * t)


def unshift_t(t_shifted, shift: float):
    """Inverse of :func:`shift_t`: ``t = t' / (s - (s - 1)·t')``."""
    return t_shifted / (shift - (shift - 1) * t_shifted)


# ---------------------------------------------------------------- variance-preserving models


def ddpm_alphas_cumprod(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    schedule: str = "scaled_linear",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``alpha_bar`` of a DDPM schedule (``"linear"`` or SD's ``"scaled_linear"``), shape ``(T,)``."""
    if schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=dtype) ** 2
    elif schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=dtype)
    else:
        raise ValueError(f"unknown beta schedule {schedule!r}; expected 'linear' or 'scaled_linear'")
    return torch.cumprod(1 - betas, dim=0)


def vp_alpha_sigma(alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha = sqrt(alpha_bar)``, ``sigma = sqrt(1 - alpha_bar)`` per discrete timestep."""
    return alphas_cumprod.sqrt(), (1 - alphas_cumprod).sqrt()


def vp_t_from_flow_t(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Continuous VP timestep index (0..T-1, fractional) whose ``sigma/(alpha+sigma)`` equals flow ``t``.

    Uses linear interpolation of the monotone map ``index -> sigma/(alpha+sigma)`` (log-SNR is monotone).
    """
    alpha, sigma = vp_alpha_sigma(alphas_cumprod.to(torch.float64))
    grid = sigma / (alpha + sigma)  # increasing in the index
    t64 = t.to(torch.float64).clamp(grid[0].item(), grid[-1].item())
    idx = torch.searchsorted(grid, t64).clamp(1, len(grid) - 1)
    lo, hi = grid[idx - 1], grid[idx]
    frac = (t64 - lo) / (hi - lo)
    return ((idx - 1).to(torch.float64) + frac).to(t.dtype)


def flow_to_vp(x_flow: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map a flow-path point to the VP path: returns ``(x_vp, alpha, sigma)``.

    On the unit-variance VP path ``alpha² + sigma² = 1`` with ``sigma/(alpha+sigma) = t``:
    ``alpha = (1-t)/r``, ``sigma = t/r`` with ``r = sqrt((1-t)² + t²)``, and ``x_vp = x_flow / r``.
    """
    t = bcast(t, x_flow)
    r = torch.sqrt((1 - t) ** 2 + t**2)
    return x_flow / r, (1 - t) / r, t / r


def vp_to_flow(x_vp: torch.Tensor, alpha, sigma) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a VP point to the flow path: ``x_flow = x_vp / (alpha + sigma)``, ``t = sigma / (alpha + sigma)``."""
    alpha, sigma = bcast(alpha, x_vp), bcast(sigma, x_vp)
    return x_vp / (alpha + sigma), sigma / (alpha + sigma)


def eps_to_v_flow(x_flow: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """Flow velocity from an epsilon prediction (the noise is shared by both paths)."""
    return v_from_noise(x_flow, eps, t)


def vpred_to_v_flow(x_vp: torch.Tensor, v_vp: torch.Tensor, alpha, sigma, t) -> torch.Tensor:
    """Flow velocity from a VP v-prediction ``v_vp = alpha·eps - sigma·x0`` (so ``eps = sigma·x_vp + alpha·v``)."""
    alpha, sigma = bcast(alpha, x_vp), bcast(sigma, x_vp)
    eps = sigma * x_vp + alpha * v_vp
    x_flow, _ = vp_to_flow(x_vp, alpha, sigma)
    return eps_to_v_flow(x_flow, eps, t)


def v_flow_to_eps(x_flow: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """Epsilon implied by a flow velocity (inverse of :func:`eps_to_v_flow`)."""
    return noise_from_v(x_flow, v, t)


