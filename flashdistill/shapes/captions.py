"""Caption grammar of the Shapes world: every phrasing of a ``Spec``, and its exact inverse ``parse_caption``.

``phrasings(spec)`` lists all paraphrases (prefix x object wording x connector or relation wording);
``caption_for(spec, rng)`` draws one. The grammar is unambiguous by construction: the category follows from
the text (relation or region words -> position; two objects with colours -> color_attr, without ->
two_objects; a number above one -> counting; one coloured object -> colors; else single_object), so
``parse_caption(c) == spec`` for every ``c in phrasings(spec)``.
"""

from __future__ import annotations

import re

import numpy as np

from .spec import COLORS, SHAPES, Obj, Spec

__all__ = ["caption_for", "parse_caption", "phrasings"]

PREFIXES = ("", "a picture of ", "a photo of ", "an image of ")
NUMBERS = {2: ("two", "2"), 3: ("three", "3"), 4: ("four", "4")}
RELATION_WORDS = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
REGION_WORDS = {
    "left": ("on the left", "in the left half", "on the left side"),
    "right": ("on the right", "in the right half", "on the right side"),
    "top": ("at the top", "in the top half", "in the upper half"),
    "bottom": ("at the bottom", "in the bottom half", "in the lower half"),
}
CONNECTORS = ("{a} and {b}", "{a} with {b}", "both {a} and {b}")


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


def _object_phrases(obj: Obj, rich: bool) -> list[str]:
    """Noun phrases for one object; ``rich`` allows the longer colour forms (single-object captions only)."""
    if obj.count > 1:
        adj = f"{obj.color} " if obj.color else ""
        return [f"{q}{n} {adj}{_plural(obj.shape)}" for n in NUMBERS[obj.count] for q in ("", "exactly ")]
    if obj.color is None:
        return [f"a {obj.shape}", f"one {obj.shape}"] if rich else [f"a {obj.shape}"]
    out = [f"a {obj.color} {obj.shape}"]
    if rich:
        out += [f"one {obj.color} {obj.shape}", f"a {obj.shape} that is {obj.color}",
                f"a {obj.shape} colored {obj.color}"]
    return out


def phrasings(spec: Spec) -> list[str]:
    """Every caption the grammar can write for ``spec``."""
    if spec.region is not None:
        heads = _object_phrases(spec.objects[0], False)
        bodies = [f"{a} {w}" for a in heads for w in REGION_WORDS[spec.region]]
    elif spec.relation is not None:
        a, b = (_object_phrases(o, False)[0] for o in spec.objects)
        bodies = [f"{a} {w} {b}" for w in RELATION_WORDS[spec.relation]]
    elif len(spec.objects) == 2:
        a, b = (_object_phrases(o, False)[0] for o in spec.objects)
        bodies = [c.format(a=a, b=b) for c in CONNECTORS]
    else:
        bodies = _object_phrases(spec.objects[0], True)
    return [p + body for p in PREFIXES for body in bodies]


def caption_for(spec: Spec, rng: np.random.Generator) -> str:
    """One paraphrase of ``spec``, drawn uniformly from ``phrasings(spec)``."""
    options = phrasings(spec)
    return options[int(rng.integers(len(options)))]


# ----------------------------------------------------------------------------------------------- parsing
_C = "|".join(COLORS)
_S = "|".join(SHAPES)
_P = "|".join(_plural(s) for s in SHAPES)
_N = "|".join(w for ws in NUMBERS.values() for w in ws)
_OBJ_RES = (
    (re.compile(rf"^(?:a|an|one) (?:(?P<color>{_C}) )?(?P<shape>{_S})$"), False),
    (re.compile(rf"^(?:a|an) (?P<shape>{_S}) (?:that is|colored) (?P<color>{_C})$"), False),
    (re.compile(rf"^(?:exactly )?(?P<num>{_N}) (?:(?P<color>{_C}) )?(?P<shape>{_P})$"), True),
)
_NUM_OF = {w: n for n, ws in NUMBERS.items() for w in ws}
_SHAPE_OF_PLURAL = {_plural(s): s for s in SHAPES}
_PREFIX_RE = re.compile("^(?:" + "|".join(re.escape(p) for p in sorted(PREFIXES, key=len, reverse=True) if p)
                        + ")")


def _parse_object(text: str) -> Obj:
    for pattern, plural in _OBJ_RES:
        m = pattern.match(text)
        if m:
            if plural:
                return Obj(_SHAPE_OF_PLURAL[m["shape"]], m["color"], _NUM_OF[m["num"]])
            return Obj(m["shape"], m["color"])
    raise ValueError(f"cannot parse object phrase {text!r}")


def _split_once(text: str, words: list[tuple[str, str]]) -> tuple[str, str, str] | None:
    for word, key in sorted(words, key=lambda wk: len(wk[0]), reverse=True):
        head, sep, tail = text.partition(f" {word} ")
        if sep:
            return head, key, tail
    return None


def parse_caption(caption: str) -> Spec:
    """Invert the grammar: the ``Spec`` a caption asks for. Raises ``ValueError`` on text outside it."""
    text = re.sub(r"\s+", " ", caption.strip().lower().rstrip("."))
    text = _PREFIX_RE.sub("", text, count=1)
    for region, words in REGION_WORDS.items():
        for w in sorted(words, key=len, reverse=True):
            if text.endswith(" " + w) and not text.endswith(" " + w + " of"):
                return Spec("position", (_parse_object(text[: -len(w) - 1]),), region=region)
    rel = _split_once(text, [(w, r) for r, ws in RELATION_WORDS.items() for w in ws])
    if rel is not None:
        a, b = _parse_object(rel[0]), _parse_object(rel[2])
        return Spec("position", (a, b), relation=rel[1])
    pair = _split_once(text.removeprefix("both "), [("and", "and"), ("with", "with")])
    if pair is not None:
        a, b = _parse_object(pair[0]), _parse_object(pair[2])
        if (a.color is None) != (b.color is None):
            raise ValueError(f"colour given for only one object in {caption!r}")
        return Spec("color_attr" if a.color else "two_objects", (a, b))
    obj = _parse_object(text)
    category = "counting" if obj.count > 1 else ("colors" if obj.color else "single_object")
    return Spec(category, (obj,))
