"""Sharded latent cache: atomic shards, index written only when complete, mismatched shapes and missing or
damaged shards reported by name."""

from __future__ import annotations

import pytest
import torch

from flashdistill.data import BatchStream
from flashdistill.data.cache import LatentDataset, shard_name, write_index, write_shard, write_sharded
from flashdistill.data.errors import DataError


def produce(start, stop, side=4):
    n = stop - start
    g = torch.Generator().manual_seed(start)
    tensors = {
        "latents": torch.randn(n, 2, side, side, generator=g),
        "cond.prompt_embeds": torch.randn(n, 3, 5, generator=g),
        "cond.pooled": torch.randn(n, 6, generator=g),
    }
    return tensors, [f"prompt {k}" for k in range(start, stop)]


def test_round_trip_and_streaming(tmp_path):
    written = write_sharded(tmp_path, 7, 3, produce, meta={"kind": "test"})
    assert written == [0, 1, 2] and (tmp_path / "index.json").is_file()
    ds = LatentDataset(tmp_path)
    assert len(ds) == 7 and ds.meta == {"kind": "test"}
    expected, _ = produce(3, 6)
    item = ds[4]
    assert item["prompt"] == "prompt 4" and item["index"] == 4
    assert torch.equal(item["latents"], expected["latents"][1])
    assert torch.equal(item["cond"].pooled, expected["cond.pooled"][1:2])
    batch = next(BatchStream(ds, batch_size=4, seed=0))
    assert batch["latents"].shape == (4, 2, 4, 4) and batch["cond"].prompt_embeds.shape == (4, 3, 5)


def test_index_waits_for_every_shard_and_resume_keeps_finished_ones(tmp_path):
    assert write_sharded(tmp_path, 7, 3, produce, rank=0, world_size=2) == [0, 2]
    assert not (tmp_path / "index.json").exists()
    with pytest.raises(DataError, match="not a finished cached dataset .*run it again"):
        LatentDataset(tmp_path)
    before = (tmp_path / shard_name(0)).stat().st_mtime_ns
    assert write_sharded(tmp_path, 7, 3, produce) == [1]  # only the missing shard
    assert (tmp_path / shard_name(0)).stat().st_mtime_ns == before
    assert [ds["index"] for ds in LatentDataset(tmp_path)] == list(range(7))


def test_mismatched_shapes_are_named(tmp_path):
    write_sharded(tmp_path, 6, 3, produce)
    tensors, prompts = produce(3, 6, side=8)  # a shard with other latent sizes
    write_shard(tmp_path / shard_name(1), {**tensors, "index": torch.arange(3, 6)}, prompts)
    with pytest.raises(DataError, match="shard_00001.safetensors: holds 3 samples with fields"):
        LatentDataset(tmp_path)
    with pytest.raises(DataError, match=r"shard_00001.safetensors: fields .* differ from shard_00000"):
        write_index(tmp_path, 2)
    with pytest.raises(DataError, match="field 'latents' has 2 rows for 3 prompts"):
        write_shard(tmp_path / "x.safetensors", {"latents": torch.zeros(2, 1)}, ["a", "b", "c"])


def test_missing_or_damaged_shard(tmp_path):
    write_sharded(tmp_path, 6, 3, produce)
    (tmp_path / shard_name(1)).write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable shard .*shard_00001"):
        LatentDataset(tmp_path)
    (tmp_path / shard_name(1)).unlink()
    with pytest.raises(DataError, match="shard shard_00001.safetensors listed in index.json is missing"):
        LatentDataset(tmp_path)
