"""FD maths in closed form, and the shipped feature network: real-vs-real is small, perturbations grow FD."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from flashdistill.eval.fd import (
    ASSET,
    FDJudge,
    FeatureNet,
    diversity,
    frechet_distance,
    load_feature_net,
    precision_recall,
    reference_images,
)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) + rng.standard_normal(6)
    assert abs(frechet_distance(a, a)) < 1e-6
    shift = rng.standard_normal(6)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Scaling by 2 about the origin: |mu|^2 + tr S + 4 tr S - 2 * 2 tr S = |mu|^2 + tr S.
    mu, cov = a.mean(0), np.cov(a, rowvar=False)
    assert frechet_distance(a, 2 * a) == pytest.approx(float(mu @ mu + np.trace(cov)), rel=1e-6)
    # Diagonal Gaussians: sum of (mu difference)^2 + (sigma difference)^2.
    z = rng.standard_normal((20000, 3))
    z = (z - z.mean(0)) / z.std(0, ddof=1)
    expected = 1.0 + (3 - 1) ** 2 + (0.5 - 1) ** 2
    assert frechet_distance(z, z * np.array([1.0, 3.0, 0.5]) + np.array([1.0, 0, 0])) == pytest.approx(
        expected, rel=1e-3)


def test_precision_recall_and_diversity():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 4))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    far = real + 100
    assert precision_recall(real, far) == (0.0, 0.0)
    # Real: two clusters. Fakes copying one cluster are all on the real manifold but cover half of it.
    two = np.concatenate([real[:150], real[:150] + 100])
    assert precision_recall(two, real[:150]) == (1.0, 0.5)
    assert precision_recall(two, np.concatenate([real[:150], real[:150] - 100])) == (0.5, 0.5)
    same = [np.ones((5, 4)), np.zeros((3, 4))]
    assert diversity(same) == 0.0
    assert diversity([np.array([[0.0, 0.0], [3.0, 4.0]])]) == pytest.approx(5.0)


def test_missing_weights_error_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m flashdistill.eval.fd"):
        load_feature_net(tmp_path / "nope.safetensors")


def test_shipped_network_is_small_and_documented():
    assert ASSET.exists() and ASSET.stat().st_size < 2_000_000
    net = load_feature_net()
    assert isinstance(net, FeatureNet) and 100_000 <= sum(p.numel() for p in net.parameters()) <= 300_000
    import json

    meta = json.loads(ASSET.with_suffix(".json").read_text())
    assert meta["heldout_real"]["pairs_label_acc"] >= 0.95


def _blur(x, r):
    return np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(r))) for i in x])


def _noise(x, sigma, seed=0):
    n = np.random.default_rng(seed).standard_normal(x.shape) * sigma
    return np.clip(x + n, 0, 255).astype(np.uint8)


def _hue(x, shift):
    hsv = np.stack([np.asarray(Image.fromarray(i).convert("HSV")) for i in x]).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + shift) % 256
    return np.stack([np.asarray(Image.fromarray(h.astype(np.uint8), "HSV").convert("RGB")) for h in hsv])


@pytest.fixture(scope="module")
def judge_and_sets():
    judge = FDJudge()
    ref = reference_images(480, seed=0)
    other = reference_images(480, seed=1)
    return judge, ref, other


def test_reference_images_are_deterministic(judge_and_sets):
    _, ref, other = judge_and_sets
    assert ref.shape == (480, 32, 32, 3) and ref.dtype == np.uint8
    assert np.array_equal(reference_images(480, seed=0)[:10], ref[:10])
    assert not np.array_equal(ref[:10], other[:10])


def test_fd_small_for_real_and_monotone_in_perturbations(judge_and_sets):
    judge, ref, other = judge_and_sets
    real = judge.score(other, ref)
    assert real["precision"] >= 0.8 and real["recall"] >= 0.8
    for name, fn, levels in [("blur", _blur, (0.6, 1.0, 1.6)), ("noise", _noise, (6, 12, 24)),
                             ("hue", _hue, (6, 12, 20))]:
        fds = [judge.score(fn(other, lvl), ref)["fd"] for lvl in levels]
        assert real["fd"] < fds[0] < fds[1] < fds[2], (name, real["fd"], fds)
        assert fds[2] > 3 * real["fd"], (name, real["fd"], fds)


def test_diversity_via_prompt_ids(judge_and_sets):
    judge, ref, _ = judge_and_sets
    ids = np.repeat(np.arange(4), 5)
    varied = judge.score(ref[:20], ref, prompt_ids=ids)["diversity"]
    copies = judge.score(np.repeat(ref[:4], 5, axis=0), ref, prompt_ids=ids)["diversity"]
    assert copies == pytest.approx(0.0, abs=1e-9) and varied > 0.1
