"""Training-time timestep distributions and the student's discrete grid.

All samplers return flow times ``t`` in ``[0, 1]`` (``t = 1`` is noise; see :mod:`flashdistill.flow`) as a
float tensor of shape ``(B,)``. They are small callables: hyper-parameters in ``__init__``, sampling in
``__call__(batch_size, generator=None, device=None)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .flow import shift_t

__all__ = [
    "draw_device",
    "student_grid",
    "Uniform",
    "LogitNormal",
    "Shifted",
    "Restricted",
    "GridSampler",
    "FlashMixture",
    "FLASH_MODE_WEIGHTS",
]


def draw_device(generator: torch.Generator | None, device=None):
    """Where a random draw must happen: on the generator's device when one is given (a CUDA generator only fills
    CUDA tensors), else on ``device``. Callers move the result to ``device`` afterwards."""
    return generator.device if generator is not None else device


def student_grid(num_steps: int, t_max: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """The student's timesteps *including* the terminal 0, shape ``(num_steps + 1,)``, decreasing.

    ``student_grid(4) = [1, .75, .5, .25, 0]``; ``student_grid(2) = [1, .5, 0]``. ``shift`` applies the SD3 shift.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = torch.linspace(t_max, 0.0, num_steps + 1, dtype=torch.float64)
    return shift_t(t, shift) if shift != 1.0 else t


class Uniform:
    """``t ~ U(t_min, t_max)``."""

    def __init__(self, t_min: float = 0.0, t_max: float = 1.0):
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
        self.t_min, self.t_max = t_min, t_max

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        u = torch.rand(batch_size, generator=generator, device=draw_device(generator, device)).to(device)
        return self.t_min + (self.t_max - self.t_min) * u


class LogitNormal:
    """SD3's logit-normal: ``t = sigmoid(m + s·z)``, ``z ~ N(0, 1)``."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean, self.std = mean, std

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        z = torch.randn(batch_size, generator=generator, device=draw_device(generator, device)).to(device)
        return torch.sigmoid(self.mean + self.std * z)


class Shifted:
    """Apply the SD3 resolution shift to another sampler's output."""

    def __init__(self, base, shift: float = 3.0):
        self.base, self.shift = base, shift

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        return shift_t(self.base(batch_size, generator=generator, device=device), self.shift)


class Restricted:
    """Restrict a sampler to ``(t_min, t_max]`` by affine rescaling of its output (split-timestep training)."""

    def __init__(self, base, t_min: float, t_max: float):
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
        self.base, self.t_min, self.t_max = base, t_min, t_max

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        t = self.base(batch_size, generator=generator, device=device)
        return self.t_min + (self.t_max - self.t_min) * t


class GridSampler:
    """Pick step indices of a student grid uniformly, optionally only those whose start ``t`` is in a range.

    Returns *indices* ``i`` into ``grid`` (the step goes from ``grid[i]`` to ``grid[i + 1]``), shape ``(B,)``.
    ``t_range=(0.5, 1.0)`` keeps steps starting at ``t > 0.5``; ``(0.0, 0.5)`` those at ``t <= 0.5``.
    """

    def __init__(self, grid: torch.Tensor, t_range: tuple[float, float] | None = None, steps=None):
        starts = grid[:-1]
        allowed = list(range(len(starts))) if steps is None else list(steps)
        if t_range is not None:
            lo, hi = t_range
            allowed = [i for i in allowed if lo < float(starts[i]) <= hi or (lo == 0.0 and float(starts[i]) == 0)]
        if not allowed:
            raise ValueError(f"no student step starts inside t_range={t_range} for grid {grid.tolist()}")
        self.grid, self.allowed = grid, torch.tensor(allowed)

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        on = draw_device(generator, device)
        pick = torch.randint(len(self.allowed), (batch_size,), generator=generator, device=on)
        return self.allowed.to(on)[pick].to(device)


# Flash Diffusion (arXiv 2406.02347): mode weights on t = 1/4, 1/2, 3/4, 1 per training phase. The first row is
# the warm-up, which trains only the two noisiest modes.
FLASH_MODE_WEIGHTS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 0.5, 0.5),
    (0.1, 0.3, 0.3, 0.3),
    (0.25, 0.25, 0.25, 0.25),
    (0.4, 0.2, 0.2, 0.2),
)


class FlashMixture:
    """Flash Diffusion's phased timestep distribution.

    ``K`` equally spaced timesteps ``t_j = j/K`` (j = 1..K). Their probabilities follow a mixture of Gaussians
    centred on the four modes ``t = 1/4, 1/2, 3/4, 1`` (indices K/4, K/2, 3K/4, K) with standard deviation
    ``sqrt(0.5 / K^2)`` in ``t`` units (``sqrt(0.5)`` in index units), weighted per phase by
    :data:`FLASH_MODE_WEIGHTS` (or custom ``mode_weights``). ``set_phase(p)`` switches the weights.
    """

    def __init__(self, K: int = 32, mode_weights: Sequence[Sequence[float]] = FLASH_MODE_WEIGHTS,
                 var: float = 0.5, phase: int = 0):
        if K < 4 or K % 4:
            raise ValueError(f"K must be a positive multiple of 4, got {K}")
        for row in mode_weights:
            if len(row) != 4 or any(w < 0 for w in row) or not math.isclose(sum(row), 1.0, abs_tol=1e-6):
                raise ValueError(f"each mode-weight row needs 4 non-negative weights summing to 1, got {row}")
        self.K, self.var = K, var
        self.mode_weights = [list(map(float, r)) for r in mode_weights]
        self.timesteps = torch.arange(1, K + 1, dtype=torch.float64) / K
        self.set_phase(phase)

    @property
    def std(self) -> float:
        return math.sqrt(self.var / self.K**2)

    def probs_for(self, phase: int) -> torch.Tensor:
        """Probability of each of the K timesteps in ``phase``, shape ``(K,)``."""
        weights = torch.tensor(self.mode_weights[min(phase, len(self.mode_weights) - 1)], dtype=torch.float64)
        centres = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
        dens = torch.exp(-0.5 * ((self.timesteps[:, None] - centres[None]) / self.std) ** 2)
        dens = dens / dens.sum(0, keepdim=True)  # each mode is a distribution over the K timesteps
        return dens @ weights

    def set_phase(self, phase: int) -> None:
        if phase < 0:
            raise ValueError(f"phase must be >= 0, got {phase}")
        self.phase = phase
        self.probs = self.probs_for(phase)

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        on = draw_device(generator, device)
        idx = torch.multinomial(self.probs.float().to(on), batch_size, replacement=True, generator=generator)
        return self.timesteps.to(on)[idx].float().to(device)
