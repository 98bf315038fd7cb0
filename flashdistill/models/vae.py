"""Pixels <-> model latents for diffusers ``AutoencoderKL``, honouring both ``scaling_factor`` and ``shift_factor``.

Latents given to and returned by denoisers are ``(z - shift_factor) · scaling_factor`` (SD3 convention; SD1.5/SDXL
have no shift). Forgetting the shift is a known defect of other distillation code: SD3's is 0.0609.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["LatentCodec", "to_uint8", "from_uint8"]


def from_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 → ``(B, 3, H, W)`` float in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[None]
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [-1, 1] → ``(B, H, W, 3)`` uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class LatentCodec:
    """Encode/decode between images in [-1, 1] ``(B, 3, H, W)`` and scaled latents ``(B, C, h, w)``."""

    def __init__(self, vae):
        self.vae = vae
        self.scale = float(vae.config.scaling_factor)
        self.shift = float(vae.config.shift_factor or 0.0)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, images: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        dist = self.vae.encode(images.to(self.vae.device, self.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return ((z - self.shift) * self.scale).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode_with_grad(latents)

    def decode_with_grad(self, latents: torch.Tensor) -> torch.Tensor:
        """``decode`` keeping the graph into ``latents`` (perceptual losses on decoded images)."""
        z = latents.to(self.vae.device, self.dtype) / self.scale + self.shift
        return self.vae.decode(z, return_dict=False)[0].float()
