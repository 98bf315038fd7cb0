"""Perceptual distances for the Flash Diffusion distillation loss (the paper uses LPIPS for SDXL and PixArt).

Both latents are decoded to images (the student's with its graph, the teacher's without) and compared by a
frozen network: ``compare(images_student, images_teacher) -> (B,)``. The decoder and the network are passed
in, so this module imports no diffusers: the recipe builds them (LPIPS from user-supplied local weights, or on
Shapes the project's own FD feature network, :func:`feature_compare`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._precision import acc

__all__ = ["DecodedDistance", "feature_compare"]


class DecodedDistance:
    """``distance(x0_student, x0_teacher) -> (B,)`` in image space: ``compare(decode(x0_s), decode(x0_t))``."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor],
                 compare: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.decode, self.compare = decode, compare

    def __call__(self, x0_student: torch.Tensor, x0_teacher: torch.Tensor) -> torch.Tensor:
        images_s = self.decode(x0_student)
        with torch.no_grad():  # stop-gradient: the teacher's image is the target
            images_t = self.decode(x0_teacher.detach())
        return self.compare(images_s, images_t)


def feature_compare(features: Callable[[torch.Tensor], torch.Tensor], size: int | None = None):
    """``compare`` for :class:`DecodedDistance` from a feature network ``(B, 3, H, W) in [-1, 1] -> (B, F)``: the
    mean squared distance of the features (images area-resized to ``size`` first when given)."""

    def compare(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if size is not None and a.shape[-1] != size:
            a = F.interpolate(a, size=(size, size), mode="area")
            b = F.interpolate(b, size=(size, size), mode="area")
        return (acc(features(a)) - acc(features(b).detach())).pow(2).flatten(1).mean(1)

    return compare
