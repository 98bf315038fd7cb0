"""Accumulation precision shared by the losses: fp32 for half types, float64 kept as is (maths tests)."""

from __future__ import annotations

import torch


def acc(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least fp32 (bf16/fp16 -> fp32; fp32 and fp64 unchanged). Differentiable."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
