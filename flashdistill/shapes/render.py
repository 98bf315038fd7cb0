"""Layout and anti-aliased drawing of Shapes scenes.

``layout(spec, rng)`` places concrete objects (shape, colour, centre, size in unit coordinates, y down) so
that the spec holds: exact counts, relations by GenEval's rule (and only the asked relation), absolute halves
with a margin, no overlaps (a gap keeps same-coloured objects apart after blur). Colours a caption leaves free
are drawn from the palette minus the held-out pairs. ``draw(scene, rng, size)`` supersamples 4x with PIL and
box-filters down, over a dark, nearly grey background that is plain, a gentle gradient or faint noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .spec import COLORS, HELDOUT_PAIRS, IMAGE_SIZE, SHAPES, Spec, relative_position

__all__ = ["Placed", "Scene", "draw", "layout", "render"]

SUPERSAMPLE = 4
GAP = 0.08  # minimum gap between object boxes, as a fraction of the image side
BORDER = 0.03  # minimum distance of a box to the image border
REGION_MARGIN = 0.06  # an object asked for "on the left" has its centre at x <= 0.5 - margin
CROSS_ARM = 0.36  # arm width of the cross, as a fraction of its size
SIZE_RANGE = {1: (0.30, 0.50), 2: (0.26, 0.38), 3: (0.24, 0.32), 4: (0.24, 0.30)}


@dataclass(frozen=True)
class Placed:
    """A drawn object: centre ``(cx, cy)`` and side ``size`` in unit coordinates, its exact ``rgb``."""

    shape: str
    color: str
    rgb: tuple[int, int, int]
    cx: float
    cy: float
    size: float

    @property
    def box(self) -> np.ndarray:
        h = self.size / 2
        return np.array([self.cx - h, self.cy - h, self.cx + h, self.cy + h])


@dataclass(frozen=True)
class Scene:
    """Concrete content of an image: objects plus background (grey level, tint, texture kind and strength)."""

    objects: tuple[Placed, ...]
    gray: float
    tint: tuple[float, float, float]
    texture: str
    strength: float


def _free_color(shape: str, rng: np.random.Generator) -> str:
    allowed = [c for c in COLORS if (c, shape) not in HELDOUT_PAIRS]
    return allowed[int(rng.integers(len(allowed)))]


def _jitter(color: str, rng: np.random.Generator) -> tuple[int, int, int]:
    gain, *shift = rng.random(4).tolist()
    gain = 0.88 + 0.12 * gain
    return tuple(int(min(255.0, max(0.0, c * gain + 20 * d - 10))) for c, d in zip(COLORS[color], shift))


def _separated(box: tuple, others: list[tuple]) -> bool:
    for o in others:
        if not (box[0] >= o[2] + GAP or o[0] >= box[2] + GAP or box[1] >= o[3] + GAP or o[1] >= box[3] + GAP):
            return False
    return True


def _constraints_hold(spec: Spec, boxes: list[tuple]) -> bool:
    if spec.relation is not None:
        return relative_position(boxes[0], boxes[1]) == {spec.relation}
    if spec.region is not None:
        cx, cy = (boxes[0][0] + boxes[0][2]) / 2, (boxes[0][1] + boxes[0][3]) / 2
        lim = 0.5 - REGION_MARGIN
        inside = {"left": cx <= lim, "right": cx >= 1 - lim, "top": cy <= lim, "bottom": cy >= 1 - lim}
        return inside[spec.region]
    return True


def layout(spec: Spec, rng: np.random.Generator) -> Scene:
    """Concrete objects satisfying ``spec`` (the first placed objects are ``spec.objects`` in order)."""
    kinds = [(o.shape, o.color) for o in spec.objects for _ in range(o.count)]
    n = len(kinds)
    lo, hi = SIZE_RANGE[n]
    scale = 1.0
    for attempt in range(2000):
        if attempt and attempt % 200 == 0:
            scale *= 0.95
        boxes: list[tuple] = []
        for s in (lo + (hi - lo) * rng.random(n) * scale).tolist():
            span = 1 - 2 * BORDER - s
            for u, v in rng.random((30, 2)).tolist():  # each object gets a few tries before a restart
                x0, y0 = BORDER + span * u, BORDER + span * v
                box = (x0, y0, x0 + s, y0 + s)
                if _separated(box, boxes):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == n and _constraints_hold(spec, boxes):
            break
    else:  # pragma: no cover - the size shrink makes this unreachable in practice
        raise RuntimeError(f"could not lay out {spec}")
    objects = []
    for (shape, color), box in zip(kinds, boxes):
        color = color or _free_color(shape, rng)
        objects.append(Placed(shape, color, _jitter(color, rng), (box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                              box[2] - box[0]))
    texture = ("plain", "gradient", "noise")[int(rng.integers(3))]
    strength = float(rng.uniform(4, 16) if texture == "gradient" else rng.uniform(1.5, 5))
    tint = tuple(float(v) for v in rng.uniform(-4, 4, 3))
    return Scene(tuple(objects), float(rng.uniform(12, 72)), tint, texture, strength)


def _draw_shape(d: ImageDraw.ImageDraw, shape: str, box: np.ndarray, fill) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    if shape == "circle":
        d.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "square":
        d.rectangle([x0, y0, x1, y1], fill=fill)
    elif shape == "triangle":
        d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        a = (x1 - x0) * CROSS_ARM / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        d.rectangle([cx - a, y0, cx + a, y1], fill=fill)
        d.rectangle([x0, cy - a, x1, cy + a], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _background(scene: Scene, rng: np.random.Generator, size: int) -> np.ndarray:
    bg = np.full((size, size, 3), scene.gray) + np.asarray(scene.tint)
    if scene.texture == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        u = np.linspace(-1, 1, size)
        ramp = np.cos(angle) * u[None, :] + np.sin(angle) * u[:, None]
        bg += scene.strength * ramp[..., None]
    elif scene.texture == "noise":
        bg += scene.strength * rng.standard_normal((size, size, 1))
    return bg


def draw(scene: Scene, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Rasterise ``scene`` to an ``(size, size, 3)`` uint8 image."""
    big = size * SUPERSAMPLE
    paint = Image.new("RGB", (big, big))
    cover = Image.new("L", (big, big))
    dp, dc = ImageDraw.Draw(paint), ImageDraw.Draw(cover)
    for o in scene.objects:
        box = o.box * big
        box[2:] -= 1  # PIL boxes include their last pixel
        _draw_shape(dp, o.shape, box, o.rgb)
        _draw_shape(dc, o.shape, box, 255)
    paint_small = np.asarray(paint.resize((size, size), Image.BOX), dtype=np.float64)
    alpha = np.asarray(cover.resize((size, size), Image.BOX), dtype=np.float64)[..., None] / 255.0
    img = _background(scene, rng, size) * (1 - alpha) + paint_small
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(spec: Spec, rng_or_seed: np.random.Generator | int, size: int = IMAGE_SIZE) -> np.ndarray:
    """An ``(size, size, 3)`` uint8 image satisfying ``spec``; deterministic for a given seed."""
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    return draw(layout(spec, rng), rng, size)
