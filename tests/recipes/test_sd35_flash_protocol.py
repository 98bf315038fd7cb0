"""SD3.5-Flash config keys are used or rejected by name; accumulation, per-model schedules, the warm-up's scoring
level, gram pairing and the split branches' divergence behave as documented."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from tinydata import make_tiny_data

from flashdistill.config import ConfigError, from_dict
from flashdistill.recipes.sd35_flash import SD35FlashConfig, run_recipe
from flashdistill.recipes.sd35_flash_dmd import draw_iteration
from flashdistill.recipes.sd35_flash_parts import branch_divergence
from flashdistill.timesteps import GridSampler, student_grid
from flashdistill.training.draws import GlobalDraws


@pytest.mark.parametrize("stage, extra, named", [
    ("pretrain", {"proxy_updates": 3}, "proxy_updates"),
    ("pretrain", {"adv_weight": 0.5, "gram_blocks": [1]}, "adv_weight, gram_blocks"),
    ("pretrain", {"teacher_steps": 8}, "teacher_steps"),  # stored trajectories: the online solve is not used
    ("dmd", {"trajectories": "online"}, "trajectories"),
    ("dmd", {"tg_weighting": "t_i"}, "tg_weighting"),
])
def test_fields_of_the_other_stage_are_rejected_by_name(stage, extra, named):
    with pytest.raises(ConfigError, match=f"stage {stage} does not use {named}"):
        from_dict(SD35FlashConfig, {"stage": stage, **extra})


def test_gram_needs_paired_samples_and_something_must_train():
    with pytest.raises(ConfigError, match="student_noise: data"):
        from_dict(SD35FlashConfig, {"stage": "dmd", "gram_weight": 1.0})
    with pytest.raises(ConfigError, match="nothing trains"):
        from_dict(SD35FlashConfig, {"stage": "dmd", "dmd_weight": 0, "adv_weight": 0})
    with pytest.raises(ConfigError, match="disc_t_star"):
        from_dict(SD35FlashConfig, {"stage": "dmd", "disc_t_star": [0.5, 1.0]})
    cfg = from_dict(SD35FlashConfig, {"stage": "dmd", "disc_t_star": [0.0, 0.5, 0.95]})  # near 0 and near 1
    assert cfg.disc_t_star == [0.0, 0.5, 0.95]


def test_generate_config_has_no_unread_solver_key():
    from flashdistill.data.generate import GenerateConfig

    with pytest.raises(ConfigError, match="unknown key 'solver'"):
        from_dict(GenerateConfig, {"out": "x", "prompts": "p.txt", "solver": "euler"})


def _parts(warmup: int, score_at: str = "actual", student_noise: str = "fresh", steps=(2,)):
    grid = student_grid(4)
    cfg = from_dict(SD35FlashConfig, {"stage": "dmd", "warmup_noisier": warmup, "warmup_score_at": score_at,
                                      "student_noise": student_noise, "adv_weight": 0.0})
    return SimpleNamespace(cfg=cfg, grid=grid, draws=GlobalDraws(torch.Generator().manual_seed(0)),
                           sampler=GridSampler(grid, steps=list(steps)), device=torch.device("cpu"), disc=None)


def _batch(b=3):
    from flashdistill.types import Conditioning

    return {"latents": torch.zeros(b, 4, 2, 2), "noise": torch.randn(b, 4, 2, 2),
            "cond": Conditioning(torch.zeros(b, 2, 8), torch.zeros(b, 4))}


def test_noisier_warm_up_is_scored_where_the_sample_is():
    batch = _batch()
    # the step at t = 0.5 fed the t = 0.75 point: it lands at noise level 0.5, not at its label 0.25
    mb = draw_iteration(_parts(warmup=5), batch, it=1)
    assert mb["start"].tolist() == [1, 1, 1] and mb["t_label"].tolist() == [0.5] * 3
    assert mb["t_next"].tolist() == [0.25] * 3 and mb["t_score"].tolist() == [0.5] * 3
    label = draw_iteration(_parts(warmup=5, score_at="label"), batch, it=1)
    assert label["t_score"].tolist() == [0.25] * 3  # the alternative, a config key
    after = draw_iteration(_parts(warmup=5), batch, it=6)  # after the warm-up: the exact point, scored at t_next
    assert after["start"].tolist() == [2, 2, 2] and after["t_score"].tolist() == [0.25] * 3


def test_gram_pairs_the_student_with_the_teacher_samples_noise():
    batch = _batch()
    paired = draw_iteration(_parts(0, student_noise="data"), batch, it=1)
    assert torch.equal(paired["noise"], batch["noise"])  # the student starts from the teacher sample's noise
    fresh = draw_iteration(_parts(0), batch, it=1)
    assert not torch.allclose(fresh["noise"], batch["noise"])


def test_branch_divergence():
    start = {"w": torch.zeros(4)}
    live = {"w": torch.ones(4)}
    assert branch_divergence(start, live, start)["export_vs_live"] == 0.0  # an export that never moved
    assert branch_divergence(start, live, {"w": torch.full((4,), 0.5)})["export_vs_live"] == pytest.approx(0.5)


def _cfg(root, name, **kw):
    base = {"teacher": "tiny", "data": str(root / "data"), "out": str(root / name), "batch_size": 4,
            "train": {"run_dir": str(root / f"run_{name}"), "max_steps": 2, "overwrite": True,
                      "log": {"every": 1, "progress_bar": False, "tensorboard": False}}}
    for key, value in kw.items():
        if key == "train":
            base["train"].update(value)
        else:
            base[key] = value
    return from_dict(SD35FlashConfig, base)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("protocol"), num_steps=4)


def _weights(folder):
    return load_file(str(next((folder / "transformer").glob("*.safetensors"))))


@pytest.mark.parametrize("stage", ["pretrain", "dmd"])
def test_gradient_accumulation_is_honoured_and_exact(data_dir, stage):
    """Micro-batches of the same global batch give the same update as the whole batch (up to float rounding),
    and they really are micro-batches (the config key is used, not ignored)."""
    extra = {"stage": stage, "student_optim": {"lr": 1e-3}}
    if stage == "dmd":
        extra.update(proxy_updates=1, disc_blocks=[0, 1], disc_hidden=16, step_sampling="per_sample",
                     student_noise="data", gram_weight=1.0, gram_blocks=[1])
    run_recipe(_cfg(data_dir, f"acc1_{stage}", **extra))
    run_recipe(_cfg(data_dir, f"acc2_{stage}", train={"gradient_accumulation": 2}, **extra))
    w1, w2 = _weights(data_dir / f"acc1_{stage}"), _weights(data_dir / f"acc2_{stage}")
    diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert diff < 2e-5, diff
    # 4 samples cannot make 8 micro-batches: the key is used, and named
    with pytest.raises(ConfigError, match="gradient_accumulation = 8"):
        run_recipe(_cfg(data_dir, f"acc8_{stage}", train={"gradient_accumulation": 8}, **extra))


def test_each_schedule_is_sized_by_its_own_updates(data_dir):
    """The student steps every proxy_updates-th iteration: its cosine schedule spans ceil(max_steps / k) updates."""
    run_recipe(_cfg(data_dir, "sched", stage="dmd", proxy_updates=2, adv_weight=0.0,
                    student_optim={"lr": 1e-3, "schedule": "cosine"}, proxy_optim={"lr": 1e-3, "schedule": "cosine"},
                    train={"max_steps": 4}))
    rows = [json.loads(line) for line in (data_dir / "run_sched" / "metrics.jsonl").read_text().splitlines()]
    # generator updates at iterations 1 and 3 (2 of them): the second runs at half the peak (cosine at 1/2);
    # sized by 4 iterations it would be 0.85 of the peak
    assert rows[2]["lr/student"] == pytest.approx(0.5e-3)
    assert rows[2]["lr/proxy"] == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 2))).item())


def test_last_step_dmd_renoises_only_the_samples_landing_at_zero():
    """With timestep sharing the step landing at t = 0 has no shared timestep: "none" masks it out, "renoise"
    scores its x0 estimate re-noised to the drawn t; samples landing above 0 keep their own landing point."""
    from flashdistill.recipes.sd35_flash_dmd import dmd_point

    b = 4
    x, v, x0 = torch.randn(b, 4, 2, 2), torch.randn(b, 4, 2, 2), torch.randn(b, 4, 2, 2)
    mb = {"t_label": torch.tensor([0.25, 0.5, 0.25, 1.0]), "t_next": torch.tensor([0.0, 0.25, 0.0, 0.75]),
          "t_score": torch.tensor([0.0, 0.25, 0.0, 0.75]), "renoise_t": torch.tensor([0.3, 0.6, 0.9, 0.1]),
          "renoise_noise": torch.randn(b, 4, 2, 2)}
    landing = x + (mb["t_next"] - mb["t_label"]).view(-1, 1, 1, 1) * v
    off = from_dict(SD35FlashConfig, {"stage": "dmd"})
    x_t, t, mask = dmd_point(off, x, v, x0, mb)
    assert mask.tolist() == [0.0, 1.0, 0.0, 1.0] and torch.allclose(x_t, landing)
    on = from_dict(SD35FlashConfig, {"stage": "dmd", "last_step_dmd": "renoise"})
    x_t, t, mask = dmd_point(on, x, v, x0, mb)
    assert mask.tolist() == [1.0] * 4 and t.tolist() == pytest.approx([0.3, 0.25, 0.9, 0.75])
    r = mb["renoise_t"].view(-1, 1, 1, 1)
    renoised = (1 - r) * x0 + r * mb["renoise_noise"]
    for k in range(b):
        assert torch.allclose(x_t[k], renoised[k] if k in (0, 2) else landing[k], atol=1e-6), k
    with pytest.raises(ConfigError, match="last_step_dmd"):
        from_dict(SD35FlashConfig, {"stage": "dmd", "last_step_dmd": "renoise", "timestep_sharing": False})
    with pytest.raises(ConfigError, match="stage pretrain does not use last_step_dmd"):
        from_dict(SD35FlashConfig, {"stage": "pretrain", "last_step_dmd": "renoise"})


def test_last_step_alone_trains_by_dmd_when_renoised(data_dir):
    """Only the last step (step_range [0, 0.25]) without adversarial or gram terms: refused with "none" (nothing
    trains it), trained by DMD with "renoise"; the draws are made on every iteration."""
    extra = {"stage": "dmd", "proxy_updates": 1, "adv_weight": 0.0, "step_range": [0.0, 0.25]}
    with pytest.raises(ConfigError, match="lands at t = 0"):
        run_recipe(_cfg(data_dir, "last_none", **extra))
    run_recipe(_cfg(data_dir, "last_renoise", last_step_dmd="renoise", **extra))
    rows = [json.loads(line) for line in (data_dir / "run_last_renoise" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step_index"] for r in rows] == [3.0, 3.0]
    assert all(r.get("dmd", 0) > 0 for r in rows), rows
