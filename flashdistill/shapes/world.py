"""The Shapes world: seeded captioned scenes, a train/held-out split of compositions, datasets, eval prompts.

Everything a user of the miniature world needs is importable from here (or from ``flashdistill.shapes``):

- ``sample_scene(rng, split, category)`` -> ``(caption, Spec)``: a category (uniform unless given), a spec
  and one paraphrase of it. ``split="train"`` never names a held-out (colour, shape) pair; ``split="heldout"``
  always names at least one (only for ``HELDOUT_CATEGORIES``, the ones whose captions carry colours).
- ``render(spec, rng_or_seed, size)``: an anti-aliased uint8 image satisfying the spec.
- ``make_dataset(n, seed, split, size)``: ``n`` triples ``(image, caption, spec)``.
- ``eval_prompts(n_per_category, seed, split)``: a fixed, balanced prompt set, category by category.
- ``parse_caption(caption)``: the inverse of the grammar.
"""

from __future__ import annotations

import numpy as np

from .captions import caption_for, parse_caption, phrasings
from .render import Placed, Scene, draw, layout, render
from .spec import (
    CATEGORIES,
    COLORS,
    HELDOUT_CATEGORIES,
    HELDOUT_PAIRS,
    IMAGE_SIZE,
    REGIONS,
    RELATIONS,
    SHAPES,
    Obj,
    Spec,
    relative_position,
)

__all__ = [
    "CATEGORIES",
    "COLORS",
    "HELDOUT_CATEGORIES",
    "HELDOUT_PAIRS",
    "IMAGE_SIZE",
    "REGIONS",
    "RELATIONS",
    "SHAPES",
    "SPLITS",
    "Obj",
    "Placed",
    "Scene",
    "Spec",
    "caption_for",
    "draw",
    "eval_prompts",
    "layout",
    "make_dataset",
    "parse_caption",
    "phrasings",
    "relative_position",
    "render",
    "sample_scene",
    "sample_spec",
]

SPLITS = ("train", "heldout")
_COLOR_NAMES = tuple(COLORS)


def _pick(rng: np.random.Generator, items, k: int = 1) -> list:
    idx = rng.choice(len(items), size=k, replace=False)
    return [items[int(i)] for i in idx]


def _maybe_color(rng: np.random.Generator, force: bool) -> str | None:
    return _pick(rng, _COLOR_NAMES)[0] if force or rng.random() < 0.5 else None


def _draw_spec(rng: np.random.Generator, category: str, colored: bool) -> Spec:
    """One spec of ``category``; ``colored`` forces colours wherever the category allows them."""
    if category == "single_object":
        return Spec(category, (Obj(_pick(rng, SHAPES)[0]),))
    if category == "two_objects":
        return Spec(category, tuple(Obj(s) for s in _pick(rng, SHAPES, 2)))
    if category == "counting":
        obj = Obj(_pick(rng, SHAPES)[0], _maybe_color(rng, colored), int(rng.integers(2, 5)))
        return Spec(category, (obj,))
    if category == "colors":
        return Spec(category, (Obj(_pick(rng, SHAPES)[0], _pick(rng, _COLOR_NAMES)[0]),))
    if category == "color_attr":
        shapes, colors = _pick(rng, SHAPES, 2), _pick(rng, _COLOR_NAMES, 2)
        return Spec(category, tuple(Obj(s, c) for s, c in zip(shapes, colors)))
    if category == "position":
        if rng.random() < 0.25:
            obj = Obj(_pick(rng, SHAPES)[0], _maybe_color(rng, colored))
            return Spec(category, (obj,), region=_pick(rng, REGIONS)[0])
        shapes = _pick(rng, SHAPES, 2)
        objects = tuple(Obj(s, _maybe_color(rng, colored)) for s in shapes)
        return Spec(category, objects, relation=_pick(rng, RELATIONS)[0])
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def sample_spec(rng: np.random.Generator, split: str = "train", category: str | None = None) -> Spec:
    """A random ``Spec`` of the split (see ``sample_scene``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    cats = CATEGORIES if split == "train" else HELDOUT_CATEGORIES
    if category is None:
        category = cats[int(rng.integers(len(cats)))]
    elif category not in cats:
        raise ValueError(f"category {category!r} has no {split} prompts; choose from {cats}")
    for _ in range(10_000):
        spec = _draw_spec(rng, category, colored=split == "heldout")
        if spec.is_heldout() == (split == "heldout"):
            return spec
    raise RuntimeError(f"no {split} spec found for {category}")  # pragma: no cover


def sample_scene(
    rng: np.random.Generator, split: str = "train", category: str | None = None
) -> tuple[str, Spec]:
    """A ``(caption, spec)`` pair: a spec of the split and one of its paraphrases."""
    spec = sample_spec(rng, split, category)
    return caption_for(spec, rng), spec


def make_dataset(
    n: int, seed: int, split: str = "train", size: int = IMAGE_SIZE
) -> list[tuple[np.ndarray, str, Spec]]:
    """``n`` rendered triples ``(image (size, size, 3) uint8, caption, spec)``, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        caption, spec = sample_scene(rng, split)
        out.append((render(spec, rng, size), caption, spec))
    return out


def eval_prompts(n_per_category: int, seed: int = 0, split: str = "train") -> list[tuple[str, Spec]]:
    """A fixed, balanced evaluation set: ``n_per_category`` prompts for each category of the split, in
    ``CATEGORIES`` order; each category draws from its own stream, so sets for different sizes are nested."""
    cats = CATEGORIES if split == "train" else HELDOUT_CATEGORIES
    out = []
    for i, cat in enumerate(cats):
        rng = np.random.default_rng([seed, 7919, i])
        out += [sample_scene(rng, split, cat) for _ in range(n_per_category)]
    return out
