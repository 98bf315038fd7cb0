"""Flash Diffusion's discriminator (Chadebec et al. 2024, §4 and App. A): small CNN heads on frozen-teacher features.

Student ("fake") and data ("real") samples are re-noised and passed through the *frozen teacher*; the features of
chosen blocks arrive as 2-D maps ``(B, D, h, w)`` (UNet: encoder blocks; DiT / MM-DiT: image tokens reshaped to
their patch grid — the adapters' ``feature_maps``). Each tapped block gets one head: ``num_down`` convolutions of
kernel 4 and stride 2, each followed by GroupNorm and SiLU, then a 1×1 convolution to one logit per location,
averaged over locations to one logit per sample. A missing tap is an error, never a fallback to the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvHead", "ConvDisc", "tokens_to_map"]


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Image tokens ``(B, N, D)`` in row-major patch order (as diffusers' patch embedding flattens them) ->
    ``(B, D, height, width)``."""
    b, n, d = tokens.shape
    if n != height * width:
        raise ValueError(f"{n} image tokens do not form a {height}x{width} patch grid")
    return tokens.transpose(1, 2).reshape(b, d, height, width)


def _groups(channels: int, wanted: int = 32) -> int:
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


class ConvHead(nn.Module):
    """``(B, D, h, w)`` features -> ``(B,)`` logits."""

    def __init__(self, channels: int, hidden: int = 256, num_down: int = 2):
        super().__init__()
        if num_down < 1:
            raise ValueError(f"num_down must be >= 1, got {num_down}")
        layers: list[nn.Module] = []
        for k in range(num_down):
            layers += [nn.Conv2d(channels if k == 0 else hidden, hidden, kernel_size=4, stride=2, padding=1),
                       nn.GroupNorm(_groups(hidden), hidden), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, 1, kernel_size=1)
        self.num_down = num_down

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 4:
            raise ValueError(f"head input must be a feature map (B, D, h, w), got shape {tuple(features.shape)}")
        if min(features.shape[-2:]) < 2**self.num_down:
            raise ValueError(f"a {features.shape[-2]}x{features.shape[-1]} feature map is too small for "
                             f"{self.num_down} stride-2 convolutions: lower disc_num_down")
        return self.out(self.body(features)).flatten(1).mean(1)


class ConvDisc(nn.Module):
    """One :class:`ConvHead` per tapped block; ``forward(list of (B, D_k, h_k, w_k)) -> list of (B,)``."""

    def __init__(self, channels: Sequence[int], hidden: int = 256, num_down: int = 2,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not channels:
            raise ValueError("need at least one tapped block")
        self.heads = nn.ModuleList(ConvHead(c, hidden, num_down) for c in channels)
        if generator is not None:  # reproducible start on any device: draw on the generator's device, then copy
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):  # PyTorch's default bound, 1/sqrt(fan_in), for weight and bias
                        bound = 1.0 / m.weight[0].numel() ** 0.5
                        for p in (m.weight, m.bias):
                            draw = torch.empty(p.shape, device=generator.device).uniform_(-bound, bound,
                                                                                         generator=generator)
                            p.copy_(draw)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.heads):
            raise ValueError(f"got features of {len(features)} blocks for {len(self.heads)} heads")
        return [head(f) for head, f in zip(self.heads, features, strict=True)]
