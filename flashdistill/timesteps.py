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
    """Pick step indices of a student grid, optionally only those whose start ``t`` is in a range.

    Returns *indices* ``i`` into ``grid`` (the step goes from ``grid[i]`` to ``grid[i + 1]``), shape ``(B,)``.
    ``t_range=(0.5, 1.0)`` keeps steps starting at ``t > 0.5``; ``(0.0, 0.5)`` those at ``t <= 0.5``.
    ``weights`` (one per step of the grid, ``t = 1`` first) makes the draw non-uniform: step ``i`` is drawn with
    probability ``weights[i]`` over the sum of the kept steps' weights; a step of weight 0 is never drawn.
    """

    def __init__(self, grid: torch.Tensor, t_range: tuple[float, float] | None = None, steps=None,
                 weights: Sequence[float] | None = None):
        starts = grid[:-1]
        allowed = list(range(len(starts))) if steps is None else list(steps)
        if t_range is not None:
            lo, hi = t_range
            allowed = [i for i in allowed if lo < float(starts[i]) <= hi or (lo == 0.0 and float(starts[i]) == 0)]
        if weights is not None:
            if len(weights) != len(starts) or any(not w >= 0 for w in weights):
                raise ValueError(f"weights {list(weights)} must be one number >= 0 per step of the "
                                 f"{len(starts)}-step grid")
            allowed = [i for i in allowed if weights[i] > 0]
        if not allowed:
            raise ValueError(f"no student step starts inside t_range={t_range} (weights {weights}) for grid "
                             f"{grid.tolist()}")
        self.grid, self.allowed = grid, torch.tensor(allowed)
        # without weights, draws stay torch.randint over `allowed` (as before weights existed); the CDF (uniform
        # then) serves `pick`
        self.weighted = weights is not None
        w = torch.tensor([float(weights[i]) if weights is not None else 1.0 for i in allowed], dtype=torch.float64)
        self.cdf = (w.cumsum(0) / w.sum()).float()

    def pick(self, u: torch.Tensor) -> torch.Tensor:
        """Step indices (on ``u``'s device) for uniforms ``u`` in [0, 1): the inverse of the weights' CDF."""
        pos = torch.searchsorted(self.cdf.to(u.device), u.float().contiguous(), right=True)
        return self.allowed.to(u.device)[pos.clamp_(max=len(self.allowed) - 1)]

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        on = draw_device(generator, device)
        if self.weighted:
            return self.pick(torch.rand(batch_size, generator=generator, device=on)).to(device)
        pick = torch.randint(len(self.allowed), (batch_size,), generator=generator, device=on)
        return self.allowed.to(on)[pick].to(device)


# Flash Diffusion (arXiv 2406.02347, Eq. 7 and App. A): weights of the four modes at 1/4, 1/2, 3/4 and all of the
# K-point grid (t = 0.25, 0.5, 0.75, 1 for a flow model) per training phase. The first row is the warm-up on the
# two least-noisy modes; each later phase moves mass toward full noise while the four inference timesteps stay
# over-sampled. (The official configs list the same numbers against a noise-first index, i.e. reversed.)
FLASH_MODE_WEIGHTS: tuple[tuple[float, float, float, float], ...] = (
    (0.5, 0.5, 0.0, 0.0),
    (0.3, 0.3, 0.3, 0.1),
    (0.25, 0.25, 0.25, 0.25),
    (0.2, 0.2, 0.2, 0.4),
)


class FlashMixture:
    """Flash Diffusion's phased timestep distribution (Eq. 7) over a K-point grid.

    The grid holds ``K`` equally spaced points ``j/K`` (j = 1..K) of the teacher's own index range. Their
    probabilities are one Gaussian mixture ``Σ_k β_k N(j; μ_k, var)`` with modes ``μ = K/4, K/2, 3K/4, K`` and
    variance ``var`` in index units (the paper's ``σ = sqrt(0.5 / K²)`` in fractions of the range), normalised
    once over the K points. ``β`` is the current phase's row of ``mode_weights`` (``set_phase``).

    ``to_flow`` maps fractions of the index range (a ``(K,)`` float64 tensor in (0, 1]) to flow times: the
    identity for flow models; for variance-preserving teachers, whose modes are fractions of the DDPM index range,
    the adapter's mapping (index 999 of SD1.5 is flow t 0.94). :meth:`sample_index` returns ``j``, ``__call__``
    the flow times ``to_flow(j/K)``.
    """

    def __init__(self, K: int = 32, mode_weights: Sequence[Sequence[float]] = FLASH_MODE_WEIGHTS,
                 var: float = 0.5, phase: int = 0, to_flow=None):
        if K < 4 or K % 4:
            raise ValueError(f"K must be a positive multiple of 4, got {K}")
        if var <= 0:
            raise ValueError(f"var must be > 0, got {var}")
        for row in mode_weights:
            if len(row) != 4 or any(w < 0 for w in row) or not math.isclose(sum(row), 1.0, abs_tol=1e-6):
                raise ValueError(f"each mode-weight row needs 4 non-negative weights summing to 1, got {row}")
        self.K, self.var = K, var
        self.mode_weights = [list(map(float, r)) for r in mode_weights]
        fractions = torch.arange(1, K + 1, dtype=torch.float64) / K
        self.timesteps = (to_flow(fractions) if to_flow is not None else fractions).to(torch.float64)
        if self.timesteps.shape != (K,) or not bool((self.timesteps[1:] > self.timesteps[:-1]).all()):
            raise ValueError("to_flow must map the K grid fractions to increasing flow times")
        self.set_phase(phase)

    @property
    def std(self) -> float:
        """The modes' standard deviation in fractions of the index range, ``sqrt(var / K²)``."""
        return math.sqrt(self.var / self.K**2)

    @property
    def num_phases(self) -> int:
        return len(self.mode_weights)

    def probs_for(self, phase: int) -> torch.Tensor:
        """Probability of each of the K grid points in ``phase`` (the last row holds after it), shape ``(K,)``."""
        weights = torch.tensor(self.mode_weights[min(phase, self.num_phases - 1)], dtype=torch.float64)
        index = torch.arange(1, self.K + 1, dtype=torch.float64)
        centres = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64) * self.K
        dens = torch.exp(-0.5 * (index[:, None] - centres[None]) ** 2 / self.var) @ weights
        return dens / dens.sum()  # one mixture, normalised once over the grid

    def set_phase(self, phase: int) -> None:
        if phase < 0:
            raise ValueError(f"phase must be >= 0, got {phase}")
        self.phase = phase
        self.probs = self.probs_for(phase)

    @property
    def grid(self) -> torch.Tensor:
        """The ``(K+1,)`` increasing flow times of grid points 0..K (point 0 is ``to_flow(0) = 0``), float64."""
        return torch.cat([torch.zeros(1, dtype=torch.float64), self.timesteps])

    def index_from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        """Grid indices ``j`` in 1..K from uniforms ``u`` in [0, 1) by the inverse CDF (for callers that draw their
        uniforms themselves, e.g. shared across processes), ``(B,)`` long on the CPU."""
        cdf = self.probs.cumsum(0)
        j = torch.searchsorted(cdf, u.double().cpu() * float(cdf[-1]), right=True) + 1
        return j.clamp_max(self.K)

    def sample_index(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        """Grid indices ``j`` in 1..K, ``(B,)`` long."""
        on = draw_device(generator, device)
        idx = torch.multinomial(self.probs.float().to(on), batch_size, replacement=True, generator=generator)
        return (idx + 1).to(device)

    def __call__(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        j = self.sample_index(batch_size, generator=generator, device=device)
        return self.timesteps.to(j.device)[j - 1].float()
