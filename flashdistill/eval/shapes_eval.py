"""ShapesEval: a GenEval-style prompt-alignment score for Shapes images, from the deterministic detector.

Per-category checks, following GenEval's rules (``largest`` plays the role of GenEval's most confident box):

- ``single_object``: some detected object has the shape.
- ``two_objects``: both shapes are detected.
- ``counting``: exactly ``count`` detected objects have the shape (and the colour, if the prompt names one).
- ``colors``: the largest object of the shape has the colour.
- ``color_attr``: for each of the two shapes, its largest object has its own colour.
- ``position``: the largest object matching each description (shape, plus colour if named) exists and the
  asked relation holds by GenEval's rule (``relative_position``: centre offset shrunk by 10% of the summed
  box sizes, the direction must carry over half of the offset); for an absolute half, the largest match has
  its centre in that half.

Objects whose outline fits no shape (``shape is None``) never count. ``overall`` is the mean of the category
accuracies (GenEval's headline number), so it does not depend on how many prompts each category has.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..shapes.geometry import FILL
from ..shapes.render import Scene
from ..shapes.spec import CATEGORIES, Obj, Spec, relative_position
from .detector import Detection, Detector

__all__ = ["ShapesEval", "as_uint8_images", "check", "scene_detections"]


def as_uint8_images(images) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 from a list/array of uint8 HWC images, floats in [0, 1] (HWC), or a torch tensor
    ``(N, 3, H, W)`` in [0, 1] or [-1, 1] (a tensor with negatives is taken as [-1, 1])."""
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        if x.ndim == 4 and x.shape[1] == 3:
            x = x.permute(0, 2, 3, 1)
        if bool((x < 0).any()):
            x = (x + 1) / 2
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i) for i in images])
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected images (N, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    return arr


def _largest(dets: Sequence[Detection], obj: Obj, use_color: bool) -> Detection | None:
    best = None
    for d in dets:
        if d.shape == obj.shape and (not use_color or obj.color is None or d.color == obj.color):
            if best is None or d.area > best.area:
                best = d
    return best


def check(spec: Spec, dets: Sequence[Detection], size: tuple[int, int]) -> bool:
    """Whether detections ``dets`` of an image of ``size = (H, W)`` satisfy ``spec``."""
    cat, objs = spec.category, spec.objects
    if cat == "single_object":
        return _largest(dets, objs[0], False) is not None
    if cat == "two_objects":
        return all(_largest(dets, o, False) is not None for o in objs)
    if cat == "counting":
        o = objs[0]
        return sum(d.shape == o.shape and (o.color is None or d.color == o.color) for d in dets) == o.count
    if cat in ("colors", "color_attr"):
        tops = [_largest(dets, o, False) for o in objs]
        return all(t is not None and t.color == o.color for t, o in zip(tops, objs))
    if cat == "position":
        tops = [_largest(dets, o, True) for o in objs]
        if any(t is None for t in tops):
            return False
        if spec.relation is not None:
            return spec.relation in relative_position(tops[0].box, tops[1].box)
        (cx, cy), (h, w) = tops[0].center, size
        return {"left": cx < w / 2, "right": cx > w / 2, "top": cy < h / 2, "bottom": cy > h / 2}[spec.region]
    raise ValueError(f"unknown category {cat!r}; expected one of {CATEGORIES}")


def scene_detections(scene: Scene, size: int) -> list[Detection]:
    """Perfect detections of a laid-out scene (ground truth, for chance levels and tests)."""
    out = []
    for o in scene.objects:
        box = tuple(float(v) for v in o.box * size)
        out.append(Detection(o.color, o.shape, box, float(FILL[o.shape] * (o.size * size) ** 2), 0.0))
    return sorted(out, key=lambda d: -d.area)


class ShapesEval:
    """Score images against the specs they were generated for. ``score`` returns a dict with one accuracy per
    category present, ``overall`` (mean over those categories), ``correct`` (per-sample booleans, input order)
    and ``counts`` (prompts per category)."""

    def __init__(self, detector: Detector | None = None):
        self.detector = detector or Detector()

    def score(self, images, specs: Sequence[Spec]) -> dict:
        images = as_uint8_images(images)
        if len(images) != len(specs):
            raise ValueError(f"{len(images)} images but {len(specs)} specs")
        dets = self.detector(images)
        size = images.shape[1:3]
        correct = [check(s, d, size) for s, d in zip(specs, dets)]
        return summarize(specs, correct)

    def score_captions(self, images, captions: Sequence[str]) -> dict:
        """Like ``score``, with specs parsed from captions (a folder of images + captions can be judged)."""
        from ..shapes.captions import parse_caption

        return self.score(images, [parse_caption(c) for c in captions])


def summarize(specs: Sequence[Spec], correct: Sequence[bool]) -> dict:
    """Per-category accuracy, their mean (``overall``), per-sample correctness and per-category counts."""
    out: dict = {}
    counts = {}
    for cat in CATEGORIES:
        hits = [c for s, c in zip(specs, correct) if s.category == cat]
        if hits:
            out[cat] = float(np.mean(hits))
            counts[cat] = len(hits)
    out["overall"] = float(np.mean([out[c] for c in counts])) if counts else float("nan")
    out["correct"] = [bool(c) for c in correct]
    out["counts"] = counts
    return out
