"""Samplers and the classifier-free-guidance wrapper.

Every network is called ``model(x_t, t, cond) -> v`` with ``x_t`` ``(B, C, H, W)``, ``t`` ``(B,)`` flow times
and a :class:`~flashdistill.types.Conditioning`. Samplers are plain functions sharing one signature,
``sampler(model, noise, timesteps, cond, ...) -> x0``; timestep grids are arguments (decreasing, ending at 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .flow import euler_step, renoise, x0_from_v
from .types import Conditioning

__all__ = ["CFG", "euler_solve", "student_sample", "as_grid", "sigmas_for_pipeline"]


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
    does). ``null_cond`` is the unconditional conditioning for a batch of 1 or of B; ``scale <= 1`` with
    ``skip_if_le_one`` calls the model once on ``cond`` only.
    """

    def __init__(self, model, null_cond: Conditioning, scale: float, skip_if_le_one: bool = True):
        self.model, self.null_cond, self.scale = model, null_cond, float(scale)
        self.skip_if_le_one = skip_if_le_one

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        if self.skip_if_le_one and self.scale <= 1.0:
            return self.model(x_t, t, cond)
        b = x_t.shape[0]
        null = self.null_cond if len(self.null_cond) == b else self.null_cond.repeat(b // len(self.null_cond))
        both = Conditioning.cat([null.to(x_t.device), cond])
        v = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), both)
        v_u, v_c = v.chunk(2)
        return v_u + self.scale * (v_c - v_u)


def _t_batch(t: torch.Tensor, b: int, like: torch.Tensor) -> torch.Tensor:
    return t.to(device=like.device, dtype=like.dtype).expand(b).clone()


@torch.no_grad()
def euler_solve(model, noise: torch.Tensor, timesteps, cond: Conditioning, return_trajectory: bool = False,
                progress=None):
    """Integrate ``dx/dt = model(x, t, cond)`` with Euler from ``timesteps[0]`` to ``timesteps[-1]``.

    ``noise`` is the state at ``timesteps[0]`` (pure noise when that is 1). Returns the final state
    ``(B, C, H, W)``; with ``return_trajectory`` also the list of states at every grid time (first = input).
    ``progress`` is an optional callable wrapping the step iterator (e.g. ``tqdm``).
    """
    grid = as_grid(timesteps, device=noise.device, dtype=torch.float64)
    x, traj = noise, [noise]
    steps = range(len(grid) - 1)
    for i in progress(steps) if progress else steps:
        t, t_next = grid[i], grid[i + 1]
        v = model(x, _t_batch(t, x.shape[0], x), cond)
        x = euler_step(x, v, t.to(x.dtype), t_next.to(x.dtype))
        traj.append(x)
    return (x, traj) if return_trajectory else x


def student_sample(model, noise: torch.Tensor, timesteps, cond: Conditioning, mode: str = "deterministic",
                   generator: torch.Generator | None = None, return_trajectory: bool = False):
    """Few-step student sampler.

    * ``deterministic``: the Euler jump ``x_{t'} = x_t + (t' − t)·v``, i.e. re-noising the x0 estimate with the
      *predicted* noise (SD3.5-Flash; stock diffusers' Euler scheduler with ``shift=1`` runs it unchanged).
    * ``stochastic``: re-noise the x0 estimate with *fresh* noise at ``t'`` (DMD2 / LCM style).

    Returns ``x0``; with ``return_trajectory`` also ``(points, x0_estimates)`` where ``points[i]`` is the state
    at ``timesteps[i]`` (``points[0] = noise``) and ``x0_estimates[i]`` the x0 predicted at step i.
    Not wrapped in ``no_grad``: callers choose (backward simulation wraps the prefix themselves).
    """
    if mode not in ("deterministic", "stochastic"):
        raise ValueError(f"mode must be 'deterministic' or 'stochastic', got {mode!r}")
    grid = as_grid(timesteps, device=noise.device, dtype=torch.float64)
    x, points, x0s = noise, [noise], []
    for i in range(len(grid) - 1):
        t, t_next = grid[i].to(x.dtype), grid[i + 1].to(x.dtype)
        v = model(x, _t_batch(t, x.shape[0], x), cond)
        x0 = x0_from_v(x, v, t)
        x0s.append(x0)
        if mode == "deterministic" or float(t_next) == 0.0:
            x = euler_step(x, v, t, t_next)
        else:
            x = renoise(x0, t_next, generator=generator)
        points.append(x)
    return (x, points, x0s) if return_trajectory else x
