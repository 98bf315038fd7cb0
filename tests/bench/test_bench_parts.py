"""The pieces of ``flashdistill bench`` on the tiny pipeline: the latency worker and its breakdown, the pass recorder,
the paired difference, the memory arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.bench.latency import Breakdown, _Clock, measure_variant, widen_positions
from flashdistill.bench.paper import PAPER_PEAK_GIB, folder_params, memory_estimates
from flashdistill.bench.passes import PassRecorder, replay_cost
from flashdistill.eval.protocol import paired_difference, t_quantile
from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder


@pytest.fixture(scope="module")
def tiny_pipe():  # this module's own: saving and calling it must not touch the session-wide one
    from flashdistill.models.tiny import tiny_sd3_pipeline

    pipe = tiny_sd3_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory, tiny_pipe):
    folder = tmp_path_factory.mktemp("bench") / "student"
    tiny_pipe.save_pretrained(folder)
    settings = {"kind": "student", "sigmas": [1.0, 0.75, 0.5, 0.25], "guidance_scale": 1.0,
                "max_sequence_length": 8, "resolution": 16}
    (folder / "flashdistill.json").write_text(json.dumps(settings))
    return folder


def _spec(folder, **kw):
    spec = {"label": "s", "model": str(folder), "steps": None, "sigmas": [1.0, 0.75, 0.5, 0.25], "guidance": 1.0,
            "max_sequence_length": 8, "resolutions": [16], "batches": [1, 3], "warmup": 1, "repeats": 2,
            "breakdown": True, "breakdown_resolution": 16, "prompt": "a red circle", "device": "cpu",
            "dtype": "float32"}
    return {**spec, **kw}


def test_latency_worker_times_every_setting_and_splits_the_time(tiny_student):
    out = measure_variant(_spec(tiny_student))
    assert [(s["resolution"], s["batch"]) for s in out["settings"]] == [(16, 1), (16, 3)]
    for s in out["settings"]:
        assert len(s["seconds_all"]) == 2 and s["seconds"] > 0
        assert s["seconds_per_image"] == pytest.approx(s["seconds"] / s["batch"])
        b = s["breakdown"]
        assert b["transformer_calls"] == 4  # the student's 4 sigmas, one call each (no CFG at guidance 1)
        parts = b["text_encoding"] + b["transformer"] + b["vae_decode"]
        assert min(b["text_encoding"], b["transformer"], b["vae_decode"]) > 0
        assert b["rest"] == pytest.approx(b["total"] - parts)
    assert out["rss_peak_mb"] >= out["rss_loaded_mb"] > 0


def test_teacher_with_cfg_makes_one_batched_call_per_step(tiny_student):
    out = measure_variant(_spec(tiny_student, sigmas=None, steps=3, guidance=3.0, batches=[1]))
    assert out["settings"][0]["breakdown"]["transformer_calls"] == 3


def test_breakdown_unwraps_on_exit(tiny_pipe):
    clock = _Clock("cpu")
    with Breakdown(tiny_pipe, clock):
        assert "encode_prompt" in tiny_pipe.__dict__ and "forward" in tiny_pipe.transformer.__dict__
    assert "encode_prompt" not in tiny_pipe.__dict__ and "forward" not in tiny_pipe.transformer.__dict__
    assert "decode" not in tiny_pipe.vae.__dict__


def test_widen_positions_lets_a_larger_image_through(tiny_student):
    from flashdistill.pipelines.folders import load_pipeline

    pipe = load_pipeline(tiny_student)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    embed = pipe.transformer.pos_embed
    big = 2 * embed.pos_embed_max_size * embed.patch_size * factor
    assert not widen_positions(pipe.transformer, embed.pos_embed_max_size * embed.patch_size * factor, factor)
    with pytest.raises(ValueError, match="pos_embed_max_size"):
        pipe("a red circle", height=big, width=big, num_inference_steps=1, max_sequence_length=8, output_type="latent")
    assert widen_positions(pipe.transformer, big, factor)
    latents = pipe("a red circle", height=big, width=big, num_inference_steps=1, max_sequence_length=8,
                   output_type="latent").images
    assert latents.shape[-1] == big // factor and torch.isfinite(latents).all()


def test_pass_recorder_counts_calls_per_iteration_and_replays_them(tiny_pipe):
    from flashdistill.training.progress import Progress

    transformer = tiny_pipe.transformer
    adapter = SD3Adapter(transformer)
    cond = SD3TextEncoder(tiny_pipe, 8).encode(["a red circle", "two squares"])
    x = torch.randn(2, 4, 8, 8)
    t = torch.full((2,), 0.5)

    class Sink(Progress):
        def __init__(self):
            self.enabled = False

    sink = Sink()
    saved = [p.requires_grad for p in transformer.parameters()]
    with PassRecorder() as rec:
        sink.write(0, {})
        for step in (1, 2):
            transformer.requires_grad_(False)
            with torch.no_grad():
                adapter(x, t, cond)
                adapter(x, t, cond)
            xg = x.clone().requires_grad_(True)
            adapter.features(xg, t, cond, [0])  # a tap stopping after block 0 of 2
            transformer.requires_grad_(True)
            sink.write(step, {})
    transformer.requires_grad_(False)
    seconds, calls = rec.window(0, 2)
    assert seconds > 0
    counts = sorted((c.kind, c.grad, c.input_grad, c.weight_grad, c.blocks, n) for c, n in calls.items())
    assert counts == [("transformer", False, False, False, 2, 4), ("transformer", True, True, False, 1, 2)]
    replay = replay_cost(rec, calls, repeats=1)
    assert replay["seconds"] == pytest.approx(sum(c["seconds"] * c["count"] for c in replay["calls"]))
    assert [p.requires_grad for p in transformer.parameters()] == [False] * len(saved)
    assert all(p.grad is None for p in transformer.parameters())
    for p, flag in zip(transformer.parameters(), saved):
        p.requires_grad_(flag)
    # the wrappers are gone once the recorder exits
    from diffusers import SD3Transformer2DModel

    from flashdistill.models.disc import MultiHeadDisc

    assert SD3Transformer2DModel.forward.__qualname__ == "SD3Transformer2DModel.forward"
    assert MultiHeadDisc.forward.__qualname__ == "MultiHeadDisc.forward" and not rec._restore


def test_paired_difference_of_identical_and_shifted_results():
    rng = np.random.default_rng(0)
    cells = [[rng.random(16) < 0.5 for _ in range(3)] for _ in range(2)]
    assert paired_difference(cells, cells) == (0.0, 0.0, 0.0)
    better = [[np.ones(16, bool) for _ in range(3)] for _ in range(2)]
    mean, lo, hi = paired_difference(better, cells)
    expected = 1 - np.mean([[c.mean() for c in s] for s in cells])
    assert mean == pytest.approx(expected) and lo <= mean <= hi and lo > 0
    with pytest.raises(ValueError, match="different"):
        paired_difference(cells[:1], cells)
    assert t_quantile(4) == pytest.approx(2.776) and t_quantile(50) == 1.96  # pooled-t comparisons of runs
    # a ratio target: a − 0.9·b, per prompt (a = b scores 0.1·score(b), never 0)
    mean, lo, hi = paired_difference(cells, cells, scale_b=0.9)
    score = np.mean([[c.mean() for c in s] for s in cells])
    assert mean == pytest.approx(0.1 * score) and 0 <= lo <= mean <= hi


def test_memory_estimates_arithmetic_and_folder_counts(tiny_student, tiny_pipe):
    params = {"transformer": 2 * 2**30, "text_encoder": 2**30, "text_encoder_3": 4 * 2**30, "vae": 0}
    est = memory_estimates(params)
    assert est["16-bit"]["weights_gib"] == pytest.approx(14.0)
    assert est["16-bit, no T5"]["weights_gib"] == pytest.approx(6.0)
    assert est["8-bit, no T5"]["weights_gib"] == pytest.approx(4.0)  # transformer 1 byte, text encoder 2 bytes
    assert {k: v["paper_peak_gib"] for k, v in est.items()} == PAPER_PEAK_GIB
    counted = folder_params(tiny_student)
    assert counted["transformer"] == sum(p.numel() for p in tiny_pipe.transformer.parameters())
    assert counted["text_encoder_3"] == sum(p.numel() for p in tiny_pipe.text_encoder_3.parameters())
    assert "scheduler" not in counted and "tokenizer" not in counted


def test_sd35_medium_counts_on_the_meta_device():
    from flashdistill.bench.paper import sd35_medium_params

    p = sd35_medium_params()
    assert 2.0e9 < p["transformer"] < 2.6e9  # MM-DiT-X, "2.5B"
    assert 4.7e9 < p["text_encoder_3"] < 4.8e9  # T5-XXL encoder with its (tied, counted once) embedding
    assert 6.5e8 < p["text_encoder_2"] < 7.0e8 and 1.2e8 < p["text_encoder"] < 1.3e8


def test_results_name_paths_relative_to_the_checkout(tmp_path):
    from flashdistill.bench.report import portable

    root = tmp_path / "checkout"
    out = {"teacher": str(root / "flashdistill/assets/sd3-nano"), "n": 3,
           "overrides": [f"teacher={root}/flashdistill/assets/sd3-nano", "/elsewhere/x"]}
    got = portable(out, root)
    assert got == {"teacher": "flashdistill/assets/sd3-nano", "n": 3,
                   "overrides": ["teacher=flashdistill/assets/sd3-nano", "/elsewhere/x"]}
