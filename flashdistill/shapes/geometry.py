"""Analytic geometry of the Shapes world's shapes (the same outlines the PIL renderer draws).

Each shape fills a square box of side ``L``: ``inside`` is its point test in box units, ``FILL`` its area as
a fraction of ``L**2`` and ``CENTROID_DY`` where its centroid sits; ``draw_coverage`` rasterises many boxes at
once with supersampled point tests, batched in torch. The detector fits these outlines to images.
"""

from __future__ import annotations

import math

import torch

from .render import CROSS_ARM
from .spec import SHAPES

__all__ = ["CENTROID_DY", "FILL", "draw_coverage", "inside"]

FILL = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5, "cross": 2 * CROSS_ARM - CROSS_ARM**2}
# How far the centroid sits below the box centre, as a fraction of the side.
CENTROID_DY = {"circle": 0.0, "square": 0.0, "triangle": 1 / 6, "cross": 0.0}


def inside(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Point test in box units: the box is [-0.5, 0.5]^2, y down (triangle apex up)."""
    if shape == "circle":
        return u * u + v * v <= 0.25
    if shape == "square":
        return (u.abs() <= 0.5) & (v.abs() <= 0.5)
    if shape == "triangle":
        return (u.abs() <= (v + 0.5) / 2) & (v <= 0.5)
    if shape == "cross":
        a = CROSS_ARM / 2
        return ((u.abs() <= a) & (v.abs() <= 0.5)) | ((v.abs() <= a) & (u.abs() <= 0.5))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw_coverage(
    shape: str, cx: torch.Tensor, cy: torch.Tensor, side: torch.Tensor, h: int, w: int, sub: int = 4
) -> torch.Tensor:
    """Coverage ``(K, h, w)`` of ``shape`` with box centres ``(cx, cy)`` and sides ``side`` (pixels, each
    ``(K,)``), from ``sub x sub`` point tests per pixel."""
    offsets = (torch.arange(sub, dtype=torch.float32) + 0.5) / sub
    xs = (torch.arange(w, dtype=torch.float32)[:, None] + offsets).flatten()
    ys = (torch.arange(h, dtype=torch.float32)[:, None] + offsets).flatten()
    u = (xs[None] - cx[:, None]) / side[:, None]
    v = (ys[None] - cy[:, None]) / side[:, None]
    hit = inside(shape, u[:, None, :], v[:, :, None])  # (K, h*sub, w*sub)
    return hit.view(-1, h, sub, w, sub).sum((2, 4), dtype=torch.float32) / sub**2
