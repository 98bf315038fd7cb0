"""Per-sample noise streams, kept disjoint between purposes, seed sets and samples *by construction*.

The noise of sample ``k`` of seed set ``seed`` for purpose ``p`` (and, for samplers that re-noise, of its
``step``-th fresh draw) comes from numpy's PCG64 seeded through a ``SeedSequence`` whose entropy is the
fixed-length word tuple :func:`sample_key` ``(purpose, seed, k mod 2**32, k // 2**32, step)``: distinct tuples are
distinct seeds, so an evaluation image never starts from the noise of a training sample, and seed set 1's image k
never shares seed set 2's. ``generate-data`` draws ``"data"`` noise, evaluation ``"eval"`` noise, training-time
preview grids ``"preview"`` noise. The noise depends on nothing else (batch size, sharding, device) and is the same
on every device (drawn on the CPU, then moved).

(torch's CPU generator was used before and silently keeps only the low 32 bits of a seed: every seed set shared
its image noises. ``NOISE_SCHEME`` names this scheme; datasets record it and older ones are refused.)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PURPOSES", "NOISE_SCHEME", "sample_key", "sample_noise"]

PURPOSES = {"data": 0, "eval": 1, "preview": 2}
NOISE_SCHEME = "flashdistill.seeds/3 (numpy SeedSequence of (purpose, seed, k, step))"  # recorded by datasets
_MAX_SEED, _MAX_INDEX, _MAX_STEP = 2**32, 2**48, 2**16


def sample_key(purpose: str, seed: int, k: int, step: int = 0) -> tuple[int, ...]:
    """The SeedSequence entropy of sample ``k`` of seed set ``seed`` for ``purpose`` (see the module docstring)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown noise purpose {purpose!r}; expected one of {sorted(PURPOSES)}")
    for name, value, bound in (("seed", seed, _MAX_SEED), ("sample index", k, _MAX_INDEX), ("step", step, _MAX_STEP)):
        if not 0 <= value < bound:
            raise ValueError(f"{name} {value} must lie in [0, {bound})")
    return (PURPOSES[purpose], seed, k & 0xFFFFFFFF, k >> 32, step)


def sample_noise(purpose: str, seed: int, k: int, shape, device="cpu", dtype=torch.float32, step: int = 0):
    """Standard normal noise of ``shape`` for sample ``k`` (``step`` > 0: its step-th fresh draw), drawn on the
    CPU and returned on ``device``."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(sample_key(purpose, seed, k, step))))
    noise = torch.from_numpy(rng.standard_normal(tuple(shape), dtype=np.float32))
    return noise.to(device=device, dtype=dtype)
