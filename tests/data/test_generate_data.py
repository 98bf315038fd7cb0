"""``generate-data`` on the tiny SD3 pipeline: a readable dataset whose samples and trajectories are the
teacher's CFG Euler solve, resumable after an interruption without duplicates, shardable across processes,
with clear errors for bad input."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import flashdistill.data.cache as cache
from flashdistill.config import ConfigError
from flashdistill.data.cache import LatentDataset
from flashdistill.data.errors import DataError
from flashdistill.data.generate import (
    GenerateConfig,
    add_generate_data_args,
    generate,
    run_generate_data,
    teacher_grid,
)
from flashdistill.data.images import ImageCaptionDataset
from flashdistill.data.teacher_data import sample_noise
from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder
from flashdistill.sampling import CFG, euler_solve

PROMPTS = ["a red circle", "two blue squares", "a green triangle", "a cyan cross", "a big yellow circle"]
GRID = [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def config(prompt_file, out, **kw):
    base = dict(
        out=str(out),
        prompts=str(prompt_file),
        model="tiny",
        num_steps=6,
        guidance_scale=3.0,
        shift=3.0,
        max_sequence_length=8,
        samples_per_prompt=2,
        shard_size=3,
        batch_size=2,
        trajectory_grid=GRID,
    )
    return GenerateConfig(**{**base, **kw})


def all_fields(ds):
    return [
        {k: v for k, v in ds[i].items() if k != "cond"} | {"emb": ds[i]["cond"].prompt_embeds} for i in range(len(ds))
    ]


def same(a, b, atol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.allclose(x[k], y[k], rtol=0, atol=atol) if atol else torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


def test_teacher_grid_contains_the_student_grid():
    grid, pos = teacher_grid(6, 3.0, GRID)
    assert [grid[p].item() for p in pos] == GRID and len(grid) >= 7
    assert bool((grid[:-1] > grid[1:]).all()) and grid[0] == 1 and grid[-1] == 0


def test_dataset_is_the_teacher_solve(tiny_pipe, prompt_file, tmp_path):
    out = generate(config(prompt_file, tmp_path / "ds", save_images=True), pipe=tiny_pipe, progress=False)
    ds = LatentDataset(out)
    assert len(ds) == 10 and [ds[i]["prompt"] for i in range(10)] == [p for p in PROMPTS for _ in (0, 1)]
    assert ds.meta["trajectory_grid"] == GRID and ds.meta["num_samples"] == 10
    item = ds[3]
    assert item["latents"].shape == (4, 8, 8) and item["trajectory"].shape == (5, 4, 8, 8)
    assert torch.equal(item["noise"], sample_noise(3, 0, (4, 8, 8)))
    assert torch.equal(item["trajectory"][0], item["noise"]) and torch.equal(item["trajectory"][-1], item["latents"])
    # recompute sample 3 independently with the library's CFG + Euler solver
    text = SD3TextEncoder(tiny_pipe, 8)
    model = CFG(SD3Adapter(tiny_pipe.transformer), text.null(1), 3.0)
    grid, pos = teacher_grid(6, 3.0, GRID)
    x0, traj = euler_solve(model, item["noise"][None], grid, text.encode([PROMPTS[1]]), return_trajectory=True)
    assert torch.allclose(x0[0], item["latents"], atol=1e-5)
    assert torch.allclose(torch.stack([traj[p][0] for p in pos]), item["trajectory"], atol=1e-5)
    assert torch.allclose(item["cond"].prompt_embeds, text.encode([PROMPTS[1]]).prompt_embeds, atol=1e-6)
    assert torch.allclose(ds.null_cond().pooled, text.null(1).pooled, atol=1e-6)
    pngs = ImageCaptionDataset(out / "images", verify=True)  # the decoded PNGs form a pair dataset
    assert len(pngs) == 10 and pngs[9]["prompt"] == PROMPTS[4]


def test_interrupted_run_resumes_without_duplicates(tiny_pipe, prompt_file, tmp_path, monkeypatch):
    reference = all_fields(
        LatentDataset(generate(config(prompt_file, tmp_path / "ref"), pipe=tiny_pipe, progress=False))
    )
    out = tmp_path / "ds"
    real_write, calls = cache.write_shard, []

    def crashing_write(path, tensors, prompts):
        if len(calls) == 2:
            (out / ".shard_00002.safetensors.999.tmp").write_bytes(b"half-written")  # as if killed mid-write
            raise KeyboardInterrupt
        calls.append(path)
        return real_write(path, tensors, prompts)

    monkeypatch.setattr(cache, "write_shard", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        generate(config(prompt_file, out), pipe=tiny_pipe, progress=False)
    monkeypatch.setattr(cache, "write_shard", real_write)
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00000.safetensors", "shard_00001.safetensors"]
    assert not (out / "index.json").exists()
    kept = (out / "shard_00000.safetensors").stat().st_mtime_ns
    generate(config(prompt_file, out), pipe=tiny_pipe, progress=False)
    assert (out / "shard_00000.safetensors").stat().st_mtime_ns == kept
    assert not list(out.glob(".*.tmp")) or all(p.name.startswith(".shard_00002") for p in out.glob(".*.tmp"))
    resumed = LatentDataset(out)
    assert [resumed[i]["index"] for i in range(len(resumed))] == list(range(10))
    same(all_fields(resumed), reference)  # bit for bit: per-sample noise, same batches
    rebatched = generate(config(prompt_file, tmp_path / "b5", batch_size=5), pipe=tiny_pipe, progress=False)
    same(all_fields(LatentDataset(rebatched)), reference, atol=1e-5)  # batch size only changes float rounding
    with pytest.raises(DataError, match="different settings .*num_steps: was 6, now 8"):
        generate(config(prompt_file, out, num_steps=8), pipe=tiny_pipe, progress=False)


def test_resuming_with_changed_teacher_weights_is_refused(tiny_pipe, prompt_file, tmp_path):
    """Same folder name, other weights (e.g. a newly shipped teacher): the old data must not be reused silently."""
    out = tmp_path / "ds"
    generate(config(prompt_file, out), pipe=tiny_pipe, progress=False)
    weight = next(tiny_pipe.transformer.parameters())
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(0.01)
        with pytest.raises(DataError, match="different settings .*model_weights: was '[0-9a-f]{16}', now"):
            generate(config(prompt_file, out), pipe=tiny_pipe, progress=False)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert LatentDataset(generate(config(prompt_file, out), pipe=tiny_pipe, progress=False))  # same weights: resumes


def test_processes_take_every_kth_shard(tiny_pipe, prompt_file, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert generate(config(prompt_file, out), pipe=tiny_pipe, progress=False) is None  # shards 1, 3: not done
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00001.safetensors", "shard_00003.safetensors"]
    monkeypatch.setenv("RANK", "0")
    assert generate(config(prompt_file, out), pipe=tiny_pipe, progress=False) == out
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    single = generate(config(prompt_file, tmp_path / "one"), pipe=tiny_pipe, progress=False)
    same(all_fields(LatentDataset(out)), all_fields(LatentDataset(single)))


def test_encoding_image_caption_pairs(tiny_pipe, tmp_path):
    from PIL import Image

    root = tmp_path / "pairs"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (80 * i, 20, 200)).save(root / f"{i}.png")
    (root / "captions.jsonl").write_text(
        "".join(json.dumps({"file": f"{i}.png", "prompt": f"colour {i}"}) + "\n" for i in range(3))
    )
    out = generate(
        GenerateConfig(out=str(tmp_path / "enc"), images=str(root), model="tiny", shard_size=2, max_sequence_length=8),
        pipe=tiny_pipe,
        progress=False,
    )
    ds = LatentDataset(out)
    assert len(ds) == 3 and ds[2]["prompt"] == "colour 2" and ds[2]["latents"].shape == (4, 8, 8)
    assert ds.meta["kind"] == "encoded_pairs" and "trajectory" not in ds[0]


def cli(argv):
    parser = argparse.ArgumentParser()
    add_generate_data_args(parser)
    return run_generate_data(parser.parse_args(argv))


def test_cli_validates_before_work(tmp_path, prompt_file, capsys):
    out = str(tmp_path / "o")
    assert (
        cli(["--prompts", str(prompt_file), "--out", out, "--steps", "4", "--trajectory-grid", "1,0.5,0", "--dry-run"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "recipe: generate_data" in printed and "trajectory_grid:\n- 1.0\n- 0.5\n- 0.0" in printed
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": ""}\n')
    cases = [
        (["--prompts", str(bad), "--out", out, "--model", "tiny"], "bad.jsonl:2: empty prompt"),
        (["--prompts", str(tmp_path / "none.txt"), "--out", out], "'prompts': not found: .*none.txt"),
        (["--prompts", str(prompt_file), "--out", out, "--trajectory-grid", "0,0.5,1"], "strictly decreasing"),
        (["--prompts", str(prompt_file), "--out", out, "--steps", "0"], "'num_steps' = 0 is out of range"),
        (
            ["--prompts", str(prompt_file), "--out", out, "--model", "tiny", "--resolution", "10"],
            "resolution 10: latents of side 5 must be a whole multiple of the patch size 2",
        ),
        (["--prompts", str(prompt_file), "--out", out, "--model", str(tmp_path)], "not a diffusers pipeline"),
        (["--out", out], "exactly one of 'prompts'"),
    ]
    for argv, message in cases:
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err
        assert __import__("re").search(message, err), (message, err)
    assert not any((tmp_path / "o").glob("shard_*"))  # nothing written by any failing command
    with pytest.raises(ConfigError):
        GenerateConfig.validate(GenerateConfig(out=out, prompts="p", trajectory_grid=[1.0]))
