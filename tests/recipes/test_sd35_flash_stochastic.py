"""``sampler: stochastic`` for SD3.5-Flash stage 2: the student moves as the re-noising sampler does in backward
simulation and at the timestep-shared landing point, with noises drawn for the global batch, and the folder it
writes runs that sampler in ``flashdistill`` and in stock diffusers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from tinydata import PROMPTS, make_tiny_data

from flashdistill.config import ConfigError, from_dict
from flashdistill.flow import interpolate, x0_from_v
from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder
from flashdistill.recipes import common
from flashdistill.recipes.sd35_flash import SD35FlashConfig, run_recipe
from flashdistill.recipes.sd35_flash_dmd import dmd_point, draw_iteration
from flashdistill.timesteps import GridSampler, student_grid
from flashdistill.training.draws import GlobalDraws


def _parts(sampler: str, warmup: int = 0, steps=(1,)):
    grid = student_grid(4)
    cfg = from_dict(SD35FlashConfig, {"stage": "dmd", "sampler": sampler, "warmup_noisier": warmup,
                                      "adv_weight": 0.0})
    return SimpleNamespace(cfg=cfg, grid=grid, draws=GlobalDraws(torch.Generator().manual_seed(0)),
                           sampler=GridSampler(grid, steps=list(steps)), device=torch.device("cpu"), disc=None)


def _batch(b=3):
    from flashdistill.types import Conditioning

    return {"latents": torch.zeros(b, 4, 2, 2), "cond": Conditioning(torch.zeros(b, 2, 8), torch.zeros(b, 4))}


def test_stochastic_draws_extend_the_deterministic_sequence_and_score_at_the_next_time():
    batch = _batch()
    det = draw_iteration(_parts("deterministic", warmup=5), batch, it=1)
    sto = draw_iteration(_parts("stochastic", warmup=5), batch, it=1)
    assert "path_noise" not in det and sto["path_noise"].shape == (3, 4, 4, 2, 2)
    for key in ("noise", "fm_t", "fm_noise", "i", "start"):  # drawn first: the Euler runs' draws are unchanged
        assert torch.equal(det[key], sto[key]), key
    # the warm-up feeds the t = 1 point to the step labelled 0.75; re-noised, it lands exactly at 0.5
    assert sto["t_label"].tolist() == [0.75] * 3 and sto["t_score"].tolist() == [0.5] * 3
    assert det["t_score"].tolist() == [0.75] * 3  # Euler: the true level of its landing point
    assert len({tuple(n.flatten().tolist()) for n in sto["path_noise"].flatten(0, 1)}) == 12  # all fresh


def test_backward_simulation_re_noises_with_the_given_noises(tiny_pipe):
    student = SD3Adapter(common.copy_transformer(tiny_pipe.transformer, trainable=False))
    cond = SD3TextEncoder(tiny_pipe, 8).encode(PROMPTS[:2])
    gen = torch.Generator().manual_seed(0)
    noise, path = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 4, 8, 8, generator=gen)
    grid = student_grid(4)
    x = common.backward_simulate(student, noise, grid, 2, cond, renoise=path)
    ref = noise
    with torch.no_grad():
        for j in range(2):
            t, t_next = grid[j].float().expand(2), grid[j + 1].float().expand(2)
            ref = interpolate(x0_from_v(ref, student(ref, t, cond), t), path[:, j], t_next)
    assert torch.allclose(x, ref, atol=1e-5)
    euler = common.backward_simulate(student, noise, grid, 2, cond)
    assert (euler - x).abs().max() > 1e-3  # a different point than the Euler jumps reach
    mixed = common.backward_simulate(student, noise, grid, torch.tensor([2, 1]), cond, renoise=path)
    one = common.backward_simulate(student, noise, grid, 1, cond, renoise=path)
    # per-sample stops: sample 1 stops after one step and stands still (no re-noising at a zero-length step)
    assert torch.allclose(mixed[0], x[0], atol=1e-5) and torch.allclose(mixed[1], one[1], atol=1e-5)


def test_shared_landing_point_is_the_x0_estimate_re_noised_with_its_step_noise():
    b = 4
    x, v, x0 = torch.randn(b, 4, 2, 2), torch.randn(b, 4, 2, 2), torch.randn(b, 4, 2, 2)
    i = torch.tensor([3, 1, 0, 2])
    grid = student_grid(4).float()
    mb = {"i": i, "t_label": grid[i], "t_next": grid[i + 1], "t_score": grid[i + 1],
          "path_noise": torch.randn(b, 4, 4, 2, 2)}
    cfg = from_dict(SD35FlashConfig, {"stage": "dmd", "sampler": "stochastic"})
    x_t, t, mask = dmd_point(cfg, x, v, x0, mb)
    assert mask.tolist() == [0.0, 1.0, 1.0, 1.0]  # the step landing at t = 0 has no shared timestep
    for k in range(b):
        want = interpolate(x0[k : k + 1], mb["path_noise"][k, int(i[k])][None], grid[i[k] + 1])
        assert torch.allclose(x_t[k], want[0], atol=1e-6), k
    with pytest.raises(ConfigError, match="warmup_score_at"):
        from_dict(SD35FlashConfig, {"stage": "dmd", "sampler": "stochastic", "warmup_score_at": "label"})
    with pytest.raises(ConfigError, match="stage pretrain does not use sampler"):
        from_dict(SD35FlashConfig, {"stage": "pretrain", "sampler": "stochastic"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("stochastic"))


def test_stochastic_stage_two_trains_and_its_folder_runs_that_sampler(data_dir, caplog):
    from diffusers import StableDiffusion3Pipeline

    from flashdistill.pipelines.generate import generate_images, load_setup

    out = data_dir / "student"
    cfg = from_dict(SD35FlashConfig, {
        "stage": "dmd", "teacher": "tiny", "data": str(data_dir / "data"), "out": str(out), "batch_size": 4,
        "sampler": "stochastic", "proxy_updates": 1, "disc_blocks": [0, 1], "disc_hidden": 16,
        "step_sampling": "per_sample", "warmup_noisier": 1, "student_optim": {"lr": 1e-3},
        "train": {"run_dir": str(data_dir / "run"), "max_steps": 2, "overwrite": True,
                  "log": {"every": 1, "progress_bar": False, "tensorboard": False}}})
    run_recipe(cfg)
    rows = [json.loads(line) for line in (data_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r.get("dmd", 0) > 0 for r in rows), rows
    info = json.loads((out / "flashdistill.json").read_text())
    assert info["sampler"] == "stochastic"
    pipe = StableDiffusion3Pipeline.from_pretrained(out)
    assert pipe.scheduler.config.stochastic_sampling is True and pipe.scheduler.config.shift == 1.0
    setup = load_setup(out)
    assert setup.sampler == "stochastic"
    a, _ = generate_images(setup, PROMPTS[:2], seed=1)
    b, _ = generate_images(setup, PROMPTS[:2], seed=1)
    c, _ = generate_images(setup, PROMPTS[:2], seed=2)
    assert (a == b).all() and (a != c).any()  # the evaluation's re-noising depends only on (seed, image)
    # a stage started from this student with the Euler sampler says that it changes the student's sampler
    from flashdistill.recipes.sd35_flash_parts import _check_start_sampler

    with caplog.at_level("WARNING"):
        _check_start_sampler(from_dict(SD35FlashConfig, {"stage": "dmd", "init_student": str(out)}))
    assert "records sampler 'stochastic'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _check_start_sampler(from_dict(SD35FlashConfig, {"stage": "dmd", "init_student": str(out),
                                                         "sampler": "stochastic"}))
    assert "records sampler" not in caplog.text
