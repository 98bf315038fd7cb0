"""Samplers and the classifier-free-guidance wrapper.

Every network is called ``model(x_t, t, cond) -> v`` with ``x_t`` ``(B, C, H, W)``, ``t`` ``(B,)`` flow times
and a :class:`~flashdistill.types.Conditioning`. Samplers are plain functions sharing one signature,
``sampler(model, noise, timesteps, cond, ...) -> x0``; timestep grids are arguments (decreasing, ending at 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .flow import bcast, euler_step, renoise, x0_from_v
from .types import Conditioning

__all__ = ["CFG", "euler_solve", "renoise_update", "student_sample", "as_grid", "sigmas_for_pipeline"]


def as_grid(timesteps, device=None, dtype=torch.float32) -> torch.Tensor:
    """Validate a timestep grid (decreasing, within [0, 1]) and return it as a 1-D tensor."""
    grid = torch.as_tensor(timesteps, dtype=torch.float64)
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"a timestep grid needs at least two times (start and end), got {grid.tolist()}")
    if not bool((grid[:-1] > grid[1:]).all()):
        raise ValueError(f"timesteps must be strictly decreasing, got {grid.tolist()}")
    if grid.min() < 0 or grid.max() > 1:
        raise ValueError(f"timesteps must lie in [0, 1], got {grid.tolist()}")
    return grid.to(device=device, dtype=dtype)


def sigmas_for_pipeline(timesteps: Sequence[float]) -> list[float]:
    """The ``sigmas=`` list for diffusers' Euler scheduler (it appends the terminal 0 itself)."""
    grid = as_grid(timesteps).tolist()
    return grid[:-1] if grid[-1] == 0 else grid


class CFG:
    """Classifier-free guidance as a model wrapper: ``v = v_u + scale·(v_c − v_u)``.

    The conditional and unconditional branches run in one batched call (unconditional first, as diffusers
    does). ``null_cond`` is the unconditional conditioning for a batch of 1 or of B. ``scale`` is one number or a
    per-sample ``(B,)`` tensor (Flash Diffusion draws ω per sample); a number ``<= 1`` with ``skip_if_le_one``
    calls the model once on ``cond`` only.
    """

    def __init__(self, model, null_cond: Conditioning, scale, skip_if_le_one: bool = True):
        self.model, self.null_cond = model, null_cond
        self.scale = scale.detach() if torch.is_tensor(scale) else float(scale)
        self.skip_if_le_one = skip_if_le_one

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        per_sample = torch.is_tensor(self.scale)
        if self.skip_if_le_one and not per_sample and self.scale <= 1.0:
            return self.model(x_t, t, cond)
        b = x_t.shape[0]
        null = self.null_cond if len(self.null_cond) == b else self.null_cond.repeat(b // len(self.null_cond))
        both = Conditioning.cat([null.to(x_t.device), cond])
        v = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), both)
        v_u, v_c = v.chunk(2)
        scale = self.scale
        if per_sample:
            if scale.shape != (b,):
                raise ValueError(f"per-sample guidance must have shape ({b},), got {tuple(scale.shape)}")
            scale = scale.to(device=v.device, dtype=v.dtype).reshape(b, *([1] * (v.ndim - 1)))
        return v_u + scale * (v_c - v_u)


def _grid(timesteps, x: torch.Tensor) -> torch.Tensor:
    """A shared ``(K+1,)`` grid (strictly decreasing) or per-sample ``(B, K+1)`` grids (non-increasing: a sample
    whose grid repeats a time stands still there), as float64 on ``x``'s device."""
    grid = torch.as_tensor(timesteps, dtype=torch.float64)
    if grid.ndim == 2:
        if grid.shape[0] != x.shape[0] or grid.shape[1] < 2:
            raise ValueError(f"per-sample grids must be (B={x.shape[0]}, K+1 >= 2), got {tuple(grid.shape)}")
        if not bool((grid[:, :-1] >= grid[:, 1:]).all()) or grid.min() < 0 or grid.max() > 1:
            raise ValueError("per-sample timesteps must be non-increasing and lie in [0, 1]")
        return grid.to(x.device)
    return as_grid(grid, device=x.device, dtype=torch.float64)


def euler_solve(model, noise: torch.Tensor, timesteps, cond: Conditioning, return_trajectory: bool = False,
                progress=None, step=None, grad: bool = False):
    """Integrate ``dx/dt = model(x, t, cond)`` from ``timesteps[0]`` to ``timesteps[-1]``: the library's one
    Euler loop (teacher solves, student sampling, backward simulation, teacher segments all run through it).

    ``noise`` ``(B, C, H, W)`` is the state at the first time (pure noise when that is 1). ``timesteps`` is one
    decreasing grid ``(K+1,)`` or per-sample grids ``(B, K+1)`` (see :func:`_grid`). ``step(x, v, t, t_next)``
    replaces the Euler update (e.g. re-noising, see :func:`student_sample`); ``t``/``t_next`` are ``(B,)``.
    Returns the final state; with ``return_trajectory`` also the list of states at every grid time (first =
    input). ``progress`` optionally wraps the step iterator (e.g. ``tqdm``). Runs without gradients unless
    ``grad`` (and grad mode is on).
    """
    grid = _grid(timesteps, noise)
    per_sample = grid.ndim == 2
    x, traj = noise, [noise]
    steps = range(grid.shape[-1] - 1)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        for i in progress(steps) if progress else steps:
            if per_sample:
                t, t_next = grid[:, i].to(x.dtype), grid[:, i + 1].to(x.dtype)
            else:
                t = grid[i].to(x.dtype).expand(x.shape[0]).clone()
                t_next = grid[i + 1].to(x.dtype).expand(x.shape[0])
            v = model(x, t, cond)
            x = euler_step(x, v, t, t_next) if step is None else step(x, v, t, t_next)
            traj.append(x)
    return (x, traj) if return_trajectory else x


def renoise_update(fresh_noise, on_x0=None):
    """The stochastic sampler's update for :func:`euler_solve`'s ``step``: put the x0 estimate back on the path
    at ``t_next`` with fresh noise (DMD2 / LCM style) instead of taking the Euler jump.

    ``fresh_noise(j, x)`` returns the noise of the j-th call (0-based), shaped like ``x``; it is not called for
    the final step to t = 0, which lands on the x0 estimate itself. A sample whose step has zero length (it
    stopped on a per-sample grid) keeps its point. ``on_x0(x0)``, when given, sees every x0 estimate.
    The one definition of the update: training (backward simulation), :func:`student_sample` and evaluation
    (per-image noise) differ only in where their noise comes from.
    """
    calls = [0]

    def step(x, v, t, t_next):
        j, calls[0] = calls[0], calls[0] + 1
        x0 = x0_from_v(x, v, t)
        if on_x0 is not None:
            on_x0(x0)
        if bool((t_next == 0).all()):
            return euler_step(x, v, t, t_next)
        moved = renoise(x0, t_next, noise=fresh_noise(j, x).to(x.device, x.dtype))
        return torch.where(bcast((t_next != t).to(x.dtype), x) > 0, moved, x)

    return step


def student_sample(model, noise: torch.Tensor, timesteps, cond: Conditioning, mode: str = "deterministic",
                   generator: torch.Generator | None = None, return_trajectory: bool = False):
    """Few-step student sampler.

    * ``deterministic``: the Euler jump ``x_{t'} = x_t + (t' − t)·v``, i.e. re-noising the x0 estimate with the
      *predicted* noise (SD3.5-Flash; stock diffusers' Euler scheduler with ``shift=1`` runs it unchanged).
    * ``stochastic``: re-noise the x0 estimate with *fresh* noise at ``t'`` (DMD2 / LCM style).

    Returns ``x0``; with ``return_trajectory`` also ``(points, x0_estimates)`` where ``points[i]`` is the state
    at ``timesteps[i]`` (``points[0] = noise``) and ``x0_estimates[i]`` the x0 predicted at step i.
    Keeps gradients when grad mode is on: callers choose (backward simulation runs without).
    """
    if mode not in ("deterministic", "stochastic"):
        raise ValueError(f"mode must be 'deterministic' or 'stochastic', got {mode!r}")
    x0s = []
    if mode == "stochastic":
        on = generator.device if generator is not None else noise.device  # a generator fills its own device only
        update = renoise_update(lambda j, x: torch.randn(x.shape, generator=generator, device=on, dtype=x.dtype),
                                on_x0=x0s.append)
    else:
        def update(x, v, t, t_next):
            x0s.append(x0_from_v(x, v, t))
            return euler_step(x, v, t, t_next)

    x, points = euler_solve(model, noise, timesteps, cond, return_trajectory=True, step=update, grad=True)
    return (x, points, x0s) if return_trajectory else x
