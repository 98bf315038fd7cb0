"""Per-sample noise seeds, kept disjoint between purposes *by construction*.

The starting noise of sample ``k`` of seed set ``seed`` for purpose ``p`` comes from a CPU generator seeded with

    ``((seed · 2**36 + k) · 4) + PURPOSES[p]``     (``0 <= seed < 2**24``, ``0 <= k < 2**36``)

an injective map whose two low bits name the purpose. So an evaluation image never starts from the noise of a
training sample, whatever seeds and indices the two use: ``generate-data`` draws ``"data"`` noise, evaluation
``"eval"`` noise, training-time preview grids ``"preview"`` noise. The noise of ``k`` depends on nothing else (batch
size, sharding, device), and it is drawn on the CPU, then moved, so it is the same on every device.
"""

from __future__ import annotations

import torch

__all__ = ["PURPOSES", "NOISE_SCHEME", "sample_seed", "sample_noise"]

PURPOSES = {"data": 0, "eval": 1, "preview": 2}
NOISE_SCHEME = "flashdistill.seeds/2 (purpose in the low bits)"  # recorded by datasets, so old ones are refused
_SEED_BITS, _INDEX_BITS = 24, 36


def sample_seed(purpose: str, seed: int, k: int) -> int:
    """The generator seed of sample ``k`` of seed set ``seed`` for ``purpose`` (see the module docstring)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown noise purpose {purpose!r}; expected one of {sorted(PURPOSES)}")
    if not 0 <= seed < 2**_SEED_BITS:
        raise ValueError(f"seed {seed} must lie in [0, 2**{_SEED_BITS})")
    if not 0 <= k < 2**_INDEX_BITS:
        raise ValueError(f"sample index {k} must lie in [0, 2**{_INDEX_BITS})")
    return ((seed << _INDEX_BITS | k) << 2) | PURPOSES[purpose]


def sample_noise(purpose: str, seed: int, k: int, shape, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` for sample ``k`` (drawn on the CPU, returned on ``device``)."""
    g = torch.Generator(device="cpu").manual_seed(sample_seed(purpose, seed, k))
    return torch.randn(tuple(shape), generator=g, device="cpu").to(device=device, dtype=dtype)
