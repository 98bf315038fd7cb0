"""Vocabulary of the Shapes world and the structured ``Spec`` a caption stands for.

A ``Spec`` says what an image must contain, in GenEval terms:

- ``single_object``: one shape, no colour named ("a circle").
- ``two_objects``: two different shapes, no colours ("a circle and a square").
- ``counting``: exactly ``count`` shapes of one kind, colour optional ("three red circles").
- ``colors``: one shape with a colour ("a red circle").
- ``position``: either a relation between two different shapes, colours optional
  ("a red circle to the left of a square", ``relation`` = "left of"), or an absolute half of the image for one
  shape ("a circle on the left", ``region`` = "left").
- ``color_attr``: two different shapes with two different colours ("a red circle and a blue square").

Held-out compositions: the (colour, shape) pairs in ``HELDOUT_PAIRS`` never appear in a train-split caption
and are never drawn when a caption leaves the colour free; held-out captions each name at least one of them.
Only categories that name colours can hold them (``HELDOUT_CATEGORIES``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CATEGORIES",
    "COLORS",
    "HELDOUT_CATEGORIES",
    "HELDOUT_PAIRS",
    "IMAGE_SIZE",
    "REGIONS",
    "RELATIONS",
    "SHAPES",
    "Obj",
    "Spec",
    "relative_position",
]

IMAGE_SIZE = 32

# Palette: six saturated colours 41-73 degrees of hue apart (cyan/blue closest), so blur (mixing with a grey
# background keeps the hue) and moderate colour drift do not change the nearest colour.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45),
    "yellow": (232, 212, 38),
    "green": (45, 192, 62),
    "cyan": (38, 200, 222),
    "blue": (52, 88, 238),
    "purple": (190, 58, 228),
}
# Shapes chosen to stay distinct when drawn blurry at 8-16 px: full box, disc, upward triangle, plus sign.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
CATEGORIES: tuple[str, ...] = ("single_object", "two_objects", "counting", "colors", "position", "color_attr")
HELDOUT_CATEGORIES: tuple[str, ...] = ("counting", "colors", "position", "color_attr")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
REGIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
# One pair per shape, four different colours: a deterministic compositional hold-out.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("blue", "circle"), ("yellow", "square"), ("red", "triangle"), ("green", "cross")}
)
# GenEval's margin: a relation must hold after shrinking the centre offset by 10% of the summed box sizes.
POSITION_THRESHOLD = 0.1


@dataclass(frozen=True)
class Obj:
    """One kind of object asked for: a shape, an optional colour and how many of it."""

    shape: str
    color: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.color is not None and self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; expected one of {tuple(COLORS)}")
        if not 1 <= self.count <= 4:
            raise ValueError(f"count must be in 1..4, got {self.count}")


@dataclass(frozen=True)
class Spec:
    """What an image must contain. ``relation`` reads ``objects[0] <relation> objects[1]``;
    ``region`` is the half of the image holding ``objects[0]``."""

    category: str
    objects: tuple[Obj, ...]
    relation: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}; expected one of {CATEGORIES}")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; expected one of {RELATIONS}")
        if self.region is not None and self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r}; expected one of {REGIONS}")
        if self.relation is not None and len(self.objects) != 2:
            raise ValueError("a relation needs exactly two objects")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The (colour, shape) pairs the caption names (objects without a colour are left out)."""
        return [(o.color, o.shape) for o in self.objects if o.color is not None]

    def is_heldout(self) -> bool:
        return any(p in HELDOUT_PAIRS for p in self.pairs)

    def to_dict(self) -> dict:
        return {
            "category": self.category,
            "objects": [{"shape": o.shape, "color": o.color, "count": o.count} for o in self.objects],
            "relation": self.relation,
            "region": self.region,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Spec:
        objects = tuple(Obj(o["shape"], o.get("color"), int(o.get("count", 1))) for o in d["objects"])
        return cls(d["category"], objects, d.get("relation"), d.get("region"))


def relative_position(box_a, box_b) -> set[str]:
    """Relations of box A relative to box B (boxes ``(x0, y0, x1, y1)``, y down), GenEval's rule: the centre
    offset is shrunk by ``POSITION_THRESHOLD`` times the summed box sizes, then a direction counts when its
    share of the (unshrunk) offset length exceeds one half."""
    ax0, ay0, ax1, ay1 = (float(v) for v in box_a)
    bx0, by0, bx1, by1 = (float(v) for v in box_b)
    ox, oy = (ax0 + ax1 - bx0 - bx1) / 2, (ay0 + ay1 - by0 - by1) / 2
    rx = max(abs(ox) - POSITION_THRESHOLD * (ax1 - ax0 + bx1 - bx0), 0.0) * math.copysign(1.0, ox)
    ry = max(abs(oy) - POSITION_THRESHOLD * (ay1 - ay0 + by1 - by0), 0.0) * math.copysign(1.0, oy)
    norm = math.hypot(ox, oy)
    if norm < 1e-9 or (abs(rx) < 1e-3 and abs(ry) < 1e-3):
        return set()
    dx, dy = rx / norm, ry / norm
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels
