"""Packed 6-bit weights: four signed 6-bit values in three bytes, one fp16 scale per group of input features.

Why our own packing (and not SDNQ, which diffusers can load): measured on SD3-nano, SDNQ 0.2.8's int6 export keeps
the embedders, the output modulation and every bias in fp32 and ignores an override of its skip list, so the file is
0.233x the fp32 one (target <= 0.20x); its ``scale_dtype`` option produced NaN after a reload; and it is GPL-3.0,
which an Apache-2.0 toolkit should not make a dependency of its deployment path. This module is ~150 lines of
torch, runs wherever torch runs (CPU, CUDA, any dtype), and is exact to specify:

* every ``nn.Linear`` weight ``(out, in)`` is split into groups of ``group_size`` input features (the row is padded
  with zeros to a whole group); each group has scale ``s = max|w| / 31`` and values ``q = round(w / s)`` in
  [-31, 31], stored as ``q + 32`` in 6 bits;
* four 6-bit codes ``a, b, c, d`` fill three bytes little-endian: ``a | b << 6 | c << 12 | d << 18``;
* the forward pass unpacks and rescales the weight of each layer just before its matmul (the resident copy stays at
  0.75 bytes per weight + 2 bytes per group), then runs ``F.linear`` in the activations' dtype;
* tensors that are not Linear weights (biases, norms, the positional table, the patch convolution) are stored in
  fp16 when the model is fp32 and the values fit, and cast back to the model's dtype on load.

Pure torch: no diffusers import (the folder format lives in ``pipelines/quantized.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pack_int6", "unpack_int6", "quantize_int6", "dequantize_int6", "Int6Linear", "quantize_linears",
           "GROUP_SIZE", "QMAX"]

GROUP_SIZE = 128
QMAX = 31  # symmetric range [-31, 31]; the code 0 (= -32) is never written


def pack_int6(codes: torch.Tensor) -> torch.Tensor:
    """``codes``: uint8 values in [0, 63], last dimension a multiple of 4 -> uint8 with 3/4 of that length."""
    if codes.shape[-1] % 4:
        raise ValueError(f"pack_int6: last dimension {codes.shape[-1]} is not a multiple of 4")
    c = codes.to(torch.int32).reshape(*codes.shape[:-1], -1, 4)
    word = c[..., 0] | (c[..., 1] << 6) | (c[..., 2] << 12) | (c[..., 3] << 18)
    out = torch.stack([word & 0xFF, (word >> 8) & 0xFF, (word >> 16) & 0xFF], dim=-1)
    return out.to(torch.uint8).reshape(*codes.shape[:-1], -1)


def unpack_int6(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_int6``: uint8 ``(..., 3m)`` -> uint8 codes ``(..., 4m)``."""
    b = packed.to(torch.int32).reshape(*packed.shape[:-1], -1, 3)
    word = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    codes = torch.stack([word & 63, (word >> 6) & 63, (word >> 12) & 63, (word >> 18) & 63], dim=-1)
    return codes.to(torch.uint8).reshape(*packed.shape[:-1], -1)


def quantize_int6(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D weight -> (packed uint8 ``(out, 3/4 · in_padded)``, fp16 scales ``(out, in_padded / group_size)``).
    Scales are computed in fp32 whatever the weight's dtype."""
    if weight.ndim != 2:
        raise ValueError(f"quantize_int6: expected a 2-D weight, got shape {tuple(weight.shape)}")
    if group_size % 4:
        raise ValueError(f"quantize_int6: group_size {group_size} must be a multiple of 4")
    rows, cols = weight.shape
    pad = (-cols) % group_size
    w = F.pad(weight.detach().float(), (0, pad)).reshape(rows, -1, group_size)
    scale = (w.abs().amax(dim=-1, keepdim=True) / QMAX).to(torch.float16).float()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale is exact
    q = torch.round(w / scale).clamp(-QMAX, QMAX).to(torch.int16) + 32
    return pack_int6(q.reshape(rows, -1).to(torch.uint8)), scale.squeeze(-1).to(torch.float16)


def dequantize_int6(packed: torch.Tensor, scale: torch.Tensor, in_features: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(packed, scales) -> the ``(out, in_features)`` weight in ``dtype``, on the tensors' device."""
    rows, groups = scale.shape
    q = unpack_int6(packed).reshape(rows, groups, -1).to(dtype) - 32
    return (q * scale.to(dtype).unsqueeze(-1)).reshape(rows, -1)[:, :in_features]


class Int6Linear(nn.Module):
    """A Linear layer whose weight lives packed (buffers ``qweight``, ``scale``); the bias stays a parameter."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = GROUP_SIZE,
                 device=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = -(-in_features // group_size)
        self.register_buffer("qweight", torch.zeros(out_features, groups * group_size * 3 // 4, dtype=torch.uint8,
                                                    device=device))
        self.register_buffer("scale", torch.ones(out_features, groups, dtype=torch.float16, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = GROUP_SIZE) -> Int6Linear:
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size,
                    device=w.device, dtype=w.dtype)
        layer.qweight, layer.scale = quantize_int6(w, group_size)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def weight_(self, dtype: torch.dtype) -> torch.Tensor:
        return dequantize_int6(self.qweight, self.scale, self.in_features, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight_(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int6, group={self.group_size}"


def quantize_linears(model: nn.Module, group_size: int = GROUP_SIZE, names: list[str] | None = None) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` (or only those in ``names``) by an ``Int6Linear`` in place; returns
    the replaced module names, in order. The weights are quantised when given (``from_linear``); a model built on
    the meta device gets empty ``Int6Linear`` layers to load a state dict into."""
    replaced = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or (names is not None and name not in names):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if module.weight.is_meta:
            new = Int6Linear(module.in_features, module.out_features, module.bias is not None, group_size,
                             device="meta", dtype=module.weight.dtype)
        else:
            new = Int6Linear.from_linear(module, group_size)
        setattr(parent, child, new)
        replaced.append(name)
    return replaced
