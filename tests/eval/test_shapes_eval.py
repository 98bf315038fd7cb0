"""ShapesEval and its detector: near-perfect on ground truth, at chance on blank, noise, wrong captions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageFilter

from flashdistill.eval.detector import Detector
from flashdistill.eval.shapes_eval import ShapesEval, as_uint8_images, check, scene_detections, summarize
from flashdistill.shapes import CATEGORIES, Obj, Spec, draw, eval_prompts, layout, render


def _ground_truth(n_per_category: int, size: int, seed: int = 0):
    prompts = eval_prompts(n_per_category, seed=seed, split="train")
    rng = np.random.default_rng(seed)
    scenes = [layout(spec, rng) for _, spec in prompts]
    images = np.stack([draw(scene, rng, size) for scene in scenes])
    return prompts, scenes, images


@pytest.fixture(scope="module")
def judge():
    return ShapesEval()


@pytest.fixture(scope="module")
def gt32():
    return _ground_truth(60, 32)  # 360 images


def _blur(images: np.ndarray, radius: float) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(radius))) for i in images])


def test_ground_truth_scores_near_perfect_in_every_category(judge, gt32):
    prompts, _, images = gt32
    result = judge.score(images, [s for _, s in prompts])
    assert set(result["counts"]) == set(CATEGORIES) and all(n == 60 for n in result["counts"].values())
    for cat in CATEGORIES:
        assert result[cat] >= 0.97, (cat, result[cat])
    assert result["overall"] == pytest.approx(np.mean([result[c] for c in CATEGORIES]))
    assert len(result["correct"]) == len(images)


def test_ground_truth_at_64_pixels_and_held_out_split(judge):
    prompts, _, images = _ground_truth(12, 64, seed=1)
    result = judge.score(images, [s for _, s in prompts])
    assert all(result[c] >= 0.97 for c in CATEGORIES), result
    held = eval_prompts(15, seed=2, split="heldout")
    rng = np.random.default_rng(2)
    result = judge.score(np.stack([render(s, rng) for _, s in held]), [s for _, s in held])
    assert result["overall"] >= 0.97, result


def test_robust_to_blur_noise_desaturation_and_hue_drift(judge, gt32):
    prompts, _, images = gt32
    specs = [s for _, s in prompts]
    assert judge.score(_blur(images, 0.8), specs)["overall"] >= 0.95
    noisy = images + np.random.default_rng(0).normal(0, 8, images.shape)  # independent per channel
    assert judge.score(np.clip(noisy, 0, 255).astype(np.uint8), specs)["overall"] >= 0.95
    washed = images.mean(-1, keepdims=True) * 0.6 + images * 0.4  # 60% desaturated
    assert judge.score(washed.astype(np.uint8), specs)["overall"] >= 0.95
    hsv = np.stack([np.asarray(Image.fromarray(i).convert("HSV")) for i in images]).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + 10) % 256  # +14 degrees of hue
    drifted = np.stack([np.asarray(Image.fromarray(h.astype(np.uint8), "HSV").convert("RGB")) for h in hsv])
    assert judge.score(drifted, specs)["overall"] >= 0.95


def test_blank_noise_and_shuffled_captions_score_at_chance(judge, gt32):
    prompts, scenes, images = gt32
    specs = [s for _, s in prompts]
    # Blank and pure-noise images contain no object: chance is 0 in every category.
    assert judge.score(np.zeros_like(images), specs)["overall"] <= 0.02
    assert judge.score(np.full_like(images, 128), specs)["overall"] <= 0.02
    noise = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
    assert judge.score(noise, specs)["overall"] <= 0.05
    # Smooth high-contrast noise makes colour blobs; a few may pass as shapes, so allow some slack.
    smooth = np.clip((_blur(noise[::3], 1.5).astype(float) - 128) * 4 + 128, 0, 255).astype(np.uint8)
    assert judge.score(smooth, specs[::3])["overall"] <= 0.3
    # Shuffled captions: chance is what the true scene contents give for the wrong spec (about 0.09 overall,
    # 0.37 for single_object, where another scene often holds the shape). The judge must match it.
    perm = np.random.default_rng(1).permutation(len(specs))
    shuffled = [specs[i] for i in perm]
    result = judge.score(images, shuffled)
    truth = [check(s, scene_detections(sc, 32), (32, 32)) for s, sc in zip(shuffled, scenes)]
    chance = summarize(shuffled, truth)
    assert result["overall"] <= 0.3
    for cat in CATEGORIES:
        assert abs(result[cat] - chance[cat]) <= 0.05, (cat, result[cat], chance[cat])


def test_ground_truth_layouts_satisfy_their_specs_exactly(gt32):
    prompts, scenes, _ = gt32
    assert all(check(s, scene_detections(sc, 32), (32, 32)) for (_, s), sc in zip(prompts, scenes))


def test_checks_fail_on_the_wrong_content():
    rng = np.random.default_rng(0)
    scene = layout(Spec("position", (Obj("circle", "red"), Obj("square", "blue")), relation="left of"), rng)
    dets = scene_detections(scene, 32)
    size = (32, 32)
    red_circle, blue_square = Obj("circle", "red"), Obj("square", "blue")
    assert check(Spec("position", (red_circle, blue_square), relation="left of"), dets, size)
    assert not check(Spec("position", (Obj("circle"), Obj("square")), relation="right of"), dets, size)
    assert not check(Spec("position", (Obj("circle", "green"), blue_square), relation="left of"), dets, size)
    assert check(Spec("color_attr", (Obj("circle", "red"), Obj("square", "blue"))), dets, size)
    assert not check(Spec("color_attr", (Obj("circle", "blue"), Obj("square", "red"))), dets, size)
    assert not check(Spec("counting", (Obj("circle", count=2),)), dets, size)
    assert check(Spec("two_objects", (Obj("circle"), Obj("square"))), dets, size)
    assert not check(Spec("two_objects", (Obj("circle"), Obj("cross"))), dets, size)
    blob = [dataclasses.replace(d, shape=None) for d in dets]
    assert not check(Spec("single_object", (Obj("circle"),)), blob, size)


def test_detector_finds_objects_where_they_are():
    rng = np.random.default_rng(4)
    spec = Spec("counting", (Obj("triangle", "yellow", 3),))
    scene = layout(spec, rng)
    dets = Detector()(draw(scene, rng, 64))[0]
    assert len(dets) == 3 and all(d.shape == "triangle" and d.color == "yellow" for d in dets)
    for o in scene.objects:
        d = min(dets, key=lambda d: np.hypot(d.center[0] - o.cx * 64, d.center[1] - o.cy * 64))
        assert np.allclose(d.box, o.box * 64, atol=1.0), (d.box, o.box * 64)


def test_score_captions_and_input_formats(judge):
    import torch

    prompts = eval_prompts(3, seed=9)
    rng = np.random.default_rng(9)
    images = np.stack([render(s, rng) for _, s in prompts])
    by_spec = judge.score(images, [s for _, s in prompts])
    assert judge.score_captions(list(images), [c for c, _ in prompts])["correct"] == by_spec["correct"]
    as_tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.abs(as_uint8_images(as_tensor).astype(int) - images).max() <= 1
    with pytest.raises(ValueError):
        judge.score(images[:2], [s for _, s in prompts])
