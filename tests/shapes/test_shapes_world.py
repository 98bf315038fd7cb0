"""The Shapes world: deterministic rendering, the caption grammar and its inverse, the held-out split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.eval.detector import hue_of
from flashdistill.shapes import (
    CATEGORIES,
    COLORS,
    HELDOUT_CATEGORIES,
    HELDOUT_PAIRS,
    IMAGE_SIZE,
    SHAPES,
    Obj,
    Spec,
    caption_for,
    eval_prompts,
    layout,
    make_dataset,
    parse_caption,
    phrasings,
    render,
    sample_scene,
    sample_spec,
)


def test_vocabulary_sizes_and_palette_separation():
    assert IMAGE_SIZE == 32 and len(COLORS) >= 6 and len(SHAPES) >= 4
    hues = hue_of(torch.tensor(list(COLORS.values()), dtype=torch.float32))
    d = (hues[:, None] - hues[None]).abs()
    d = torch.minimum(d, 360 - d) + torch.eye(len(hues)) * 360
    # Closest pair: cyan / blue at ~41 degrees, so the detector tolerates ~20 degrees of hue drift.
    assert float(d.min()) >= 40, "palette hues must stay far apart so blur and drift keep the colour"


@pytest.mark.parametrize("size", [32, 64])
def test_render_is_deterministic_per_seed(size):
    spec = Spec("counting", (Obj("circle", "red", 3),))
    a, b, c = render(spec, 7, size), render(spec, 7, size), render(spec, 8, size)
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    rngs = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(render(spec, rngs[0], size), render(spec, rngs[1], size))


def test_make_dataset_is_deterministic_and_consistent():
    d1, d2 = make_dataset(40, seed=5), make_dataset(40, seed=5)
    assert [c for _, c, _ in d1] == [c for _, c, _ in d2]
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(d1, d2))
    other = make_dataset(40, seed=6)
    assert [c for _, c, _ in other] != [c for _, c, _ in d1]
    for image, caption, spec in d1:
        assert parse_caption(caption) == spec
        assert image.shape == (32, 32, 3)
    assert {s.category for _, _, s in make_dataset(200, seed=1)} == set(CATEGORIES)


def _many_specs(n_per: int = 60):
    rng = np.random.default_rng(0)
    out = [sample_spec(rng, "train", c) for c in CATEGORIES for _ in range(n_per)]
    return out + [sample_spec(rng, "heldout", c) for c in HELDOUT_CATEGORIES for _ in range(n_per)]


def test_parse_caption_inverts_every_phrasing():
    n_checked = 0
    templates = set()
    for spec in _many_specs():
        options = phrasings(spec)
        assert len(options) == len(set(options)) >= 4, spec
        for caption in options:
            assert parse_caption(caption) == spec, caption
            n_checked += 1
        templates.update(_template_of(c, spec) for c in options)
    assert n_checked > 5000
    assert len(templates) >= 60  # prefixes x wordings actually exercised


def _template_of(caption: str, spec: Spec) -> str:
    out = caption
    for o in spec.objects:
        out = out.replace(o.shape, "S").replace(str(o.color), "C")
    return out


def test_parse_caption_normalises_and_rejects():
    spec = Spec("colors", (Obj("square", "blue"),))
    assert parse_caption("  A Photo of a BLUE   square. ") == spec
    for bad in ["a dog", "a red circle and", "two", "a red circle and a square", "a circle left of"]:
        with pytest.raises(ValueError):
            parse_caption(bad)


def test_spec_json_round_trip_and_validation():
    for spec in _many_specs(10):
        assert Spec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError):
        Obj("hexagon")
    with pytest.raises(ValueError):
        Spec("position", (Obj("circle"),), relation="left of")


def test_heldout_pairs_never_in_train_and_always_in_heldout():
    rng = np.random.default_rng(1)
    words = [f"{c} {s}" for c, s in HELDOUT_PAIRS]
    for _ in range(3000):
        caption, spec = sample_scene(rng, "train")
        assert not spec.is_heldout()
        assert not any(w in caption for w in words), caption
        scene = layout(spec, rng)  # free colours never draw a held-out pair either
        assert not any((o.color, o.shape) in HELDOUT_PAIRS for o in scene.objects)
    for _ in range(500):
        caption, spec = sample_scene(rng, "heldout")
        assert spec.is_heldout() and spec.category in HELDOUT_CATEGORIES
        assert any(w in caption for w in words) or "that is" in caption or "colored" in caption
    with pytest.raises(ValueError):
        sample_scene(rng, "heldout", category="single_object")


def test_eval_prompts_are_fixed_balanced_and_nested():
    a, b = eval_prompts(10, seed=3), eval_prompts(10, seed=3)
    assert a == b
    assert [s.category for _, s in a] == [c for c in CATEGORIES for _ in range(10)]
    big = eval_prompts(20, seed=3)
    assert all(p in big for p in a)
    assert eval_prompts(10, seed=4) != a
    held = eval_prompts(5, seed=0, split="heldout")
    assert len(held) == 5 * len(HELDOUT_CATEGORIES) and all(s.is_heldout() for _, s in held)


def test_caption_for_draws_from_phrasings():
    rng = np.random.default_rng(2)
    spec = Spec("position", (Obj("cross", "cyan"), Obj("triangle")), relation="below")
    seen = {caption_for(spec, rng) for _ in range(200)}
    assert seen <= set(phrasings(spec)) and len(seen) > 5
