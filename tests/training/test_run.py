"""``Run`` in-process on the MLP job: run folder and config, guards through the loop, sample grids that do not
disturb training randomness, accumulation through ``update_accumulated``."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from jobtools import metrics
from safetensors.torch import load_file

from flashdistill.config import ConfigError, dump_config, load_config
from flashdistill.training import NonFiniteError


def run_cfg(mlp_job, run_dir, *overrides):
    base = [f"train.run_dir={run_dir}", "train.log.progress_bar=false", "train.log.every=1",
            "train.max_steps=10", "train.checkpoint.every=5"]
    return load_config(mlp_job.MLPJobConfig, None, base + list(overrides))


def test_run_folder_config_and_checkpoint_metadata(mlp_job, tmp_path):
    cfg = run_cfg(mlp_job, tmp_path / "run")
    run = mlp_job.train(cfg)
    text = dump_config(cfg)
    assert (tmp_path / "run" / "config.yaml").read_text() == text
    ckpt = run.checkpointer.latest_valid()
    assert ckpt.name == "step_00000010" and (ckpt / "config.yaml").read_text() == text
    meta = run.checkpointer.manifest(ckpt)["meta"]
    assert meta["config"] == text and meta["models"] == ["regressor", "critic"] and meta["emas"] == ["regressor_ema"]
    assert yaml.safe_load(text)["train"]["max_steps"] == 10
    rows = metrics(tmp_path / "run")
    assert sorted(rows) == list(range(1, 11)) and {"mse", "lr/regressor", "grad_norm/regressor"} <= set(rows[1])
    assert rows[10]["critic_updates"] == 5.0


def test_existing_run_needs_resume_or_overwrite(mlp_job, tmp_path):
    mlp_job.train(run_cfg(mlp_job, tmp_path / "run"))
    with pytest.raises(ConfigError, match="already has checkpoints; pass train.resume=true"):
        mlp_job.train(run_cfg(mlp_job, tmp_path / "run"))
    run = mlp_job.train(run_cfg(mlp_job, tmp_path / "run", "train.overwrite=true", "train.max_steps=3"))
    assert [s for s, _ in run.checkpointer.all()] == [3] and max(metrics(tmp_path / "run")) == 3
    with pytest.raises(ConfigError, match="checkpoint folder not found: .*nowhere"):
        mlp_job.train(run_cfg(mlp_job, tmp_path / "x", f"train.resume_from={tmp_path / 'nowhere'}"))
    fresh = mlp_job.train(run_cfg(mlp_job, tmp_path / "fresh", "train.resume=true", "train.max_steps=2"))
    assert fresh.resumed_from is None and fresh.state.step == 2  # resume with nothing to resume: starts at 0


def test_resume_from_a_given_checkpoint(mlp_job, tmp_path):
    ref = mlp_job.train(run_cfg(mlp_job, tmp_path / "ref"))
    run = mlp_job.train(run_cfg(mlp_job, tmp_path / "branch", f"train.resume_from={ref.checkpointer.path_for(5)}"))
    assert run.resumed_from == ref.checkpointer.path_for(5)
    assert metrics(tmp_path / "branch") == {s: r for s, r in metrics(tmp_path / "ref").items() if s > 5}


def test_nonfinite_loss_is_skipped_then_stops(mlp_job, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        run = mlp_job.train(run_cfg(mlp_job, tmp_path / "one", "nan_at=[3]"))
    assert "step 3: non-finite loss term(s) mse while updating 'regressor'" in caplog.text
    rows = metrics(tmp_path / "one")
    assert rows[3]["skipped/regressor"] == 1.0 and rows[4]["skipped/regressor"] == 0.0
    assert run.slots["regressor"].updates == 9 and run.state.step == 10
    with pytest.raises(NonFiniteError, match=r"3 non-finite updates in a row for 'regressor' \(last at step 6: loss"):
        mlp_job.train(run_cfg(mlp_job, tmp_path / "three", "nan_at=[4,5,6]", "train.max_nonfinite=3"))


def test_sample_grids_do_not_change_training(mlp_job, tmp_path):
    mlp_job.train(run_cfg(mlp_job, tmp_path / "plain"))
    mlp_job.train(run_cfg(mlp_job, tmp_path / "grids", "samples=true", "train.log.samples_every=4"))
    pngs = sorted(p.name for p in (tmp_path / "grids" / "samples").iterdir())
    assert pngs == ["step_00000004.png", "step_00000008.png", "step_00000010.png"]
    assert metrics(tmp_path / "plain") == metrics(tmp_path / "grids")


def test_update_accumulated_matches_full_batch(mlp_job, tmp_path):
    common = ["input_noise=0", "mask_prob=0", "optim.max_grad_norm=null", "train.max_steps=8"]
    mlp_job.train(run_cfg(mlp_job, tmp_path / "full", *common))
    mlp_job.train(run_cfg(mlp_job, tmp_path / "accum", *common, "train.gradient_accumulation=4"))
    full, accum = load_file(str(tmp_path / "full" / "final.safetensors")), load_file(
        str(tmp_path / "accum" / "final.safetensors"))
    diff = max((full[k] - accum[k]).abs().max().item() for k in full)
    assert diff < 1e-5
    losses = [(metrics(tmp_path / d)[8]["mse"]) for d in ("full", "accum")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert json.loads((tmp_path / "accum" / "done.json").read_text())["step"] == 8
    assert torch.isfinite(torch.tensor(losses)).all()


def test_job_wide_gradient_checkpointing_skips_unsupported_models(mlp_job, tmp_path):
    run = mlp_job.train(run_cfg(mlp_job, tmp_path / "gc", "train.gradient_checkpointing=true", "train.max_steps=2"))
    assert run.state.step == 2  # plain MLPs have no checkpointing switch: left as they are, no error
