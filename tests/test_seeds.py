"""Evaluation noise is disjoint from training-data noise by construction."""

from __future__ import annotations

import itertools

import pytest
import torch

from flashdistill.seeds import PURPOSES, sample_noise, sample_seed


def test_seeds_are_injective_and_purposes_disjoint():
    seen = {}
    for purpose, seed, k in itertools.product(PURPOSES, range(6), range(200)):
        s = sample_seed(purpose, seed, k)
        assert s not in seen, f"{(purpose, seed, k)} collides with {seen[s]}"
        seen[s] = (purpose, seed, k)
    # the purpose is the two low bits: no (seed, k) of one purpose can ever reach another's
    assert {s & 3 for s, (p, _, _) in seen.items() if p == "eval"} == {PURPOSES["eval"]}
    with pytest.raises(ValueError, match="purpose"):
        sample_seed("train", 0, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_seed("data", -1, 0)


def test_eval_images_never_start_from_training_noise(tiny_pipe, tmp_path):
    """The same (seed, k) gives different noise to generate-data and to evaluation, end to end."""
    from flashdistill.data.cache import LatentDataset
    from flashdistill.data.generate import GenerateConfig, generate
    from flashdistill.pipelines.generate import eval_noise

    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    generate(GenerateConfig(out=str(tmp_path / "d"), prompts=str(tmp_path / "p.txt"), model="tiny", num_steps=2,
                            resolution=16, max_sequence_length=8, shard_size=2, batch_size=2, seed=0),
             pipe=tiny_pipe, progress=False)
    data = LatentDataset(tmp_path / "d")
    for k in range(2):
        train_noise = data[k]["noise"]
        assert torch.equal(train_noise, sample_noise("data", 0, k, train_noise.shape))
        for seed in range(4):
            assert not torch.allclose(eval_noise(k, seed, train_noise.shape), train_noise)
