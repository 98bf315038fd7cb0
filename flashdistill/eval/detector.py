"""Deterministic object detector for Shapes images (no learned weights).

1. Colour segmentation: a pixel is foreground when its chroma ``max(rgb) - min(rgb)`` reaches ``chroma_min``
   (backgrounds are near-grey, object colours saturated; blur mixes a colour with grey, which keeps its hue);
   its colour is the palette colour of nearest hue (palette hues are 41-73 degrees apart, so hue drift up to
   ~20 degrees is tolerated, and brightness or saturation drift does not matter).
2. Connected components (4-neighbour, same colour) by max-label propagation with pointer jumping, in torch,
   for the whole batch at once. Components smaller than ``min_area_frac`` of the image are dropped.
3. Shape by synthesis: the component's soft coverage ``cov`` (chroma relative to its peak, over the component
   and the background pixels within two pixels of it) keeps two quantities that blur does not change, its
   total ``A`` and its centroid. Under "this is shape s" the box side follows from the area
   (``L = sqrt(A / FILL[s])``) and the box centre from the centroid; the shape is drawn analytically
   (``shapes.geometry``, the renderer's outlines), sharp or Gaussian-blurred, and its misfit is
   ``sum |cov - drawn| / A`` (0 = perfect, 2 = disjoint). The best hypothesis names the shape unless its
   misfit exceeds ``max_fit`` (then ``shape = None``: a blob, not a shape); the box is the fitted shape's box.
   No exemplars, no training and no pixel-quantised outlines: small objects and soft generators are judged
   on the same footing as large crisp ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..shapes.geometry import CENTROID_DY, FILL, draw_coverage
from ..shapes.spec import COLORS, SHAPES

__all__ = ["Detection", "Detector", "hue_of"]


@dataclass(frozen=True)
class Detection:
    """A detected object: ``box = (x0, y0, x1, y1)`` in pixels, ``shape`` None if no shape fits, ``area`` its
    soft coverage in pixels, ``fit`` the misfit of the best shape (0 = perfect)."""

    color: str
    shape: str | None
    box: tuple[float, float, float, float]
    area: float
    fit: float

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def hue_of(rgb: torch.Tensor) -> torch.Tensor:
    """Hue in degrees [0, 360) of ``(..., 3)`` RGB values (any scale)."""
    r, g, b = rgb.unbind(-1)
    mx, mn = rgb.max(-1).values, rgb.min(-1).values
    c = (mx - mn).clamp_min(1e-6)
    h = torch.where(mx == r, ((g - b) / c) % 6, torch.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return (h * 60) % 360


_PALETTE_HUES = hue_of(torch.tensor(list(COLORS.values()), dtype=torch.float32))
_COLOR_NAMES = tuple(COLORS)
SUB = 4  # point tests per pixel side when drawing hypotheses on a 32-pixel image (halved at 64)
BLUR_PX = (0.0, 0.6, 1.2)  # blur hypotheses: Gaussian sigma in pixels of a 32-pixel image, scaled with size


def connected_components(cls: torch.Tensor) -> torch.Tensor:
    """Label 4-connected regions of equal class (``cls >= 0``) in ``(N, H, W)``; background gets 0, a region
    gets one plus the flat index of one of its pixels (int64)."""
    n, h, w = cls.shape
    fg = cls >= 0
    lab = torch.arange(1, h * w + 1, dtype=torch.int32).view(1, h, w) * fg
    same_x = ((cls[:, :, 1:] == cls[:, :, :-1]) & fg[:, :, 1:]).int()  # pixel and its right neighbour
    same_y = ((cls[:, 1:] == cls[:, :-1]) & fg[:, 1:]).int()  # pixel and the one below
    while True:
        new = lab.clone()
        new[:, :, :-1] = torch.maximum(new[:, :, :-1], lab[:, :, 1:] * same_x)
        new[:, :, 1:] = torch.maximum(new[:, :, 1:], lab[:, :, :-1] * same_x)
        new[:, :-1] = torch.maximum(new[:, :-1], lab[:, 1:] * same_y)
        new[:, 1:] = torch.maximum(new[:, 1:], lab[:, :-1] * same_y)
        # Pointer jumping: a label names a pixel of the same region, whose own label is at least as large.
        flat = new.view(n, -1)
        new = flat.gather(1, (flat.long() - 1).clamp_min(0)).view(n, h, w) * fg
        if torch.equal(new, lab):
            return lab.long()
        lab = new


def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """``(n, n)`` Gaussian blur operator along one axis, zero outside (coverage outside the window is 0)."""
    x = torch.arange(n, dtype=torch.float32)
    g = torch.exp(-0.5 * ((x[:, None] - x[None]) / sigma) ** 2)
    r = torch.arange(-math.ceil(4 * sigma), math.ceil(4 * sigma) + 1, dtype=torch.float32)
    return g / torch.exp(-0.5 * (r / sigma) ** 2).sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(K, h, w)`` as two batched matrix products."""
    if sigma <= 0:
        return x
    return _blur_matrix(x.shape[1], sigma) @ x @ _blur_matrix(x.shape[2], sigma).T


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    """Integer boxes ``(K, 4)``, ``(x0, y0, x1, y1)`` with exclusive ends, of the support of ``(K, h, w)``."""
    _, h, w = masks.shape
    rows, cols = masks.amax(2) > 0, masks.amax(1) > 0
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    y0, y1 = torch.where(rows, ar_h, h).amin(1), torch.where(rows, ar_h, -1).amax(1) + 1
    x0, x1 = torch.where(cols, ar_w, w).amin(1), torch.where(cols, ar_w, -1).amax(1) + 1
    return torch.stack([x0, y0, x1, y1], 1)


def _windows(cov: torch.Tensor, box: torch.Tensor, pad: int) -> tuple[torch.Tensor, ...]:
    """Crop every map of ``cov (K, h, w)`` to one common window around its support ``box`` (plus ``pad``).
    Returns the crops ``(K, p, q)`` and the window origins ``ox, oy (K,)``."""
    k, h, w = cov.shape
    x0, y0, x1, y1 = box.unbind(1)
    p = min(h, int((y1 - y0).max()) + 2 * pad)
    q = min(w, int((x1 - x0).max()) + 2 * pad)
    oy = ((y0 + y1 - p) // 2).clamp(0, h - p)
    ox = ((x0 + x1 - q) // 2).clamp(0, w - q)
    ri = (oy[:, None] + torch.arange(p))[:, :, None]
    ci = (ox[:, None] + torch.arange(q))[:, None, :]
    return cov[torch.arange(k)[:, None, None], ri, ci], ox, oy


def fit_shapes(cov: torch.Tensor, blur_cost: float = 0.02, chunk: int = 128) -> dict[str, torch.Tensor]:
    """Fit every shape hypothesis to soft coverage maps ``cov (K, h, w)`` (see the module docstring).

    Returns ``fit (K, S)`` (best over blur levels, plus ``blur_cost`` per level used), ``box (K, S, 4)`` as
    ``(x0, y0, x1, y1)`` in pixels, and ``area (K,)``. Maps are processed in chunks of similar extent, each
    in a window just large enough for its largest member.
    """
    k, full_h, _ = cov.shape
    scale = full_h / 32
    pad = math.ceil(3 * max(BLUR_PX) * scale) + 2
    support = _boxes(cov)
    order = torch.argsort((support[:, 2:] - support[:, :2]).amax(1))
    fits = torch.full((k, len(SHAPES)), float("inf"))
    boxes = torch.zeros(k, len(SHAPES), 4)
    area = cov.sum((1, 2)).clamp_min(1e-6)
    for lo in range(0, k, chunk):
        idx = order[lo : lo + chunk]
        win, ox, oy = _windows(cov[idx], support[idx], pad)
        _, h, w = win.shape
        a = area[idx]
        mx = (win.sum(1) * (torch.arange(w) + 0.5)).sum(1) / a
        my = (win.sum(2) * (torch.arange(h) + 0.5)).sum(1) / a
        for si, shape in enumerate(SHAPES):
            side = (a / FILL[shape]).sqrt()
            cx, cy = mx, my - CENTROID_DY[shape] * side
            box = torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)
            boxes[idx, si] = box + torch.stack([ox, oy, ox, oy], 1)
            drawn = draw_coverage(shape, cx, cy, side, h, w, max(2, round(SUB / scale)))
            best = torch.full((len(idx),), float("inf"))
            for bi, b in enumerate(BLUR_PX):
                err = (_blur(drawn, b * scale) - win).abs().sum((1, 2)) / a + blur_cost * bi
                best = torch.minimum(best, err)
            fits[idx, si] = best
    return {"fit": fits, "box": boxes, "area": area}


class Detector:
    """Find coloured shapes in uint8 images ``(N, H, W, 3)``; see the module docstring for the rules."""

    def __init__(self, chroma_min: float = 40.0, min_area_frac: float = 0.012, max_fit: float = 0.3,
                 chroma_floor: float = 10.0, blur_cost: float = 0.02, max_objects: int = 8,
                 chunk: int = 512):
        self.chroma_min = chroma_min  # foreground threshold on max(rgb) - min(rgb), 0..255 scale
        self.min_area_frac = min_area_frac  # smallest component kept, as a fraction of the image area
        self.max_fit = max_fit  # worst misfit (sum |coverage - drawn shape| / area) still called a shape
        self.chroma_floor = chroma_floor  # lowest chroma counted as zero coverage
        self.blur_cost = blur_cost  # misfit added per blur level, to prefer sharp explanations
        self.max_objects = max_objects  # shapes fitted per image at most (largest components first)
        self.chunk = chunk  # images per batch (memory)

    def segment(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Palette index per pixel ``(N, H, W)`` int64 (-1 for background) and chroma ``(N, H, W)``."""
        x = torch.as_tensor(np.ascontiguousarray(images)).float()
        chroma = x.max(-1).values - x.min(-1).values
        d = (hue_of(x)[..., None] - _PALETTE_HUES).abs()
        d = torch.minimum(d, 360 - d)
        background = torch.full_like(chroma, -1, dtype=torch.int64)
        cls = torch.where(chroma >= self.chroma_min, d.argmin(-1), background)
        return cls, chroma

    def __call__(self, images) -> list[list[Detection]]:
        """Detections for each image (a list per image), largest first."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.dtype != np.uint8 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
        out: list[list[Detection]] = []
        # Many small tensor ops: intra-op threads only add overhead (about 10x CPU on a busy 2-core machine).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for i in range(0, len(images), self.chunk):
                out += self._detect(images[i : i + self.chunk])
        finally:
            torch.set_num_threads(threads)
        return out

    def _detect(self, images: np.ndarray) -> list[list[Detection]]:
        n, h, w, _ = images.shape
        cls, chroma = self.segment(images)
        lab = connected_components(cls)
        gid = (torch.arange(n).view(n, 1, 1) * (h * w + 1) + lab).flatten()
        fg = lab.flatten() > 0
        uniq, inv, area = torch.unique(gid[fg], return_inverse=True, return_counts=True)
        sel = (area >= max(3.0, self.min_area_frac * h * w)).nonzero().flatten()
        out: list[list[Detection]] = [[] for _ in range(n)]
        if len(sel) == 0:
            return out
        cmax = torch.zeros(len(uniq)).scatter_reduce(0, inv, chroma.flatten()[fg], "amax")[sel]
        img_of, lab_of = uniq[sel] // (h * w + 1), uniq[sel] % (h * w + 1)
        color_of = cls.flatten()[img_of * h * w + lab_of - 1]
        own = lab[img_of] == lab_of.view(-1, 1, 1)  # (K, H, W)
        near = F.max_pool2d(own.float().unsqueeze(1), 5, stride=1, padding=2).squeeze(1) > 0
        region = own | (near & (cls[img_of] < 0))
        # Full coverage = the 90th percentile of chroma in the component's core (robust to colour noise, close
        # to the peak under blur; the peak if there is no core); zero coverage = the image's background chroma
        # level (which grows with colour noise).
        c = chroma[img_of]
        core = -F.max_pool2d(-own.float().unsqueeze(1), 3, stride=1, padding=1).squeeze(1) > 0
        full = torch.where(core, c, torch.nan).flatten(1).nanquantile(0.9, dim=1)
        full = torch.where(core.flatten(1).any(1), full, cmax)
        bg = torch.where(cls < 0, chroma, torch.nan).flatten(1).nanmedian(1).values.nan_to_num(0.0)
        floor = torch.clamp(1.5 * bg, min=self.chroma_floor)[img_of]
        cov = ((c - floor.view(-1, 1, 1)) / (full - floor).clamp_min(1).view(-1, 1, 1)).clamp(0, 1) * region
        # Components no shape could produce (sparse or elongated) skip the fit: they are blobs.
        own_box = _boxes(own)
        bw, bh = (own_box[:, 2] - own_box[:, 0]).float(), (own_box[:, 3] - own_box[:, 1]).float()
        plausible = (area[sel] / (bw * bh) >= 0.3) & (torch.maximum(bw / bh, bh / bw) <= 2.0)
        # Only the ``max_objects`` largest plausible components of an image are fitted (scenes hold 1-4).
        rank = torch.zeros(len(sel), dtype=torch.int64)
        for i in img_of[plausible].unique().tolist():
            members = (plausible & (img_of == i)).nonzero().flatten()
            rank[members[torch.argsort(-area[sel][members])]] = torch.arange(len(members))
        plausible &= rank < self.max_objects
        fit = torch.full((len(sel),), 2.0)
        best = torch.zeros(len(sel), dtype=torch.int64)
        boxes = own_box.float()
        areas = cov.sum((1, 2))
        keep = plausible.nonzero().flatten()
        if len(keep):
            res = fit_shapes(cov[keep], self.blur_cost)
            fit[keep], best[keep] = res["fit"].min(1)
            boxes[keep] = res["box"][torch.arange(len(keep)), best[keep]]
        for j in range(len(sel)):
            shape = SHAPES[int(best[j])] if float(fit[j]) <= self.max_fit else None
            det = Detection(_COLOR_NAMES[int(color_of[j])], shape, tuple(boxes[j].tolist()), float(areas[j]),
                            min(float(fit[j]), 2.0))
            out[int(img_of[j])].append(det)
        for dets in out:
            dets.sort(key=lambda d: -d.area)
        return out
