"""Evaluation noise is disjoint from training-data noise by construction."""

from __future__ import annotations

import itertools

import pytest
import torch

from flashdistill.seeds import PURPOSES, sample_key, sample_noise


def test_keys_are_injective_and_noises_distinct():
    seen = {}
    for purpose, seed, k, step in itertools.product(PURPOSES, range(5), [0, 1, 2**32, 2**32 + 1], range(3)):
        key = sample_key(purpose, seed, k, step)
        assert key not in seen, f"{(purpose, seed, k, step)} collides with {seen[key]}"
        seen[key] = (purpose, seed, k, step)
    # the noises themselves differ across purposes, seed sets, indices and steps (torch's CPU generator keeps only
    # the low 32 bits of a seed, which made every seed set share its noises: this is the regression test)
    draws = {args: sample_noise(*args[:3], (6,), step=args[3]) for args in seen.values()}
    flat = torch.stack(list(draws.values()))
    assert torch.unique(flat[:, 0]).numel() == len(draws)
    assert torch.equal(sample_noise("eval", 3, 7, (2, 3)), sample_noise("eval", 3, 7, (2, 3)))  # reproducible
    with pytest.raises(ValueError, match="purpose"):
        sample_key("train", 0, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_key("data", -1, 0)


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
