"""Every SD3.5-Flash stage runs two iterations on the tiny pipeline and writes a student stock diffusers runs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tinydata import PROMPTS, make_tiny_data

from flashdistill.config import from_dict
from flashdistill.errors import ConfigError
from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder
from flashdistill.recipes import common
from flashdistill.recipes.sd35_flash import SD35FlashConfig, run_recipe
from flashdistill.sampling import student_sample
from flashdistill.timesteps import student_grid


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("flash"))


def _cfg(root, name, **kw):
    base = {"teacher": "tiny", "data": str(root / "data"), "out": str(root / name), "batch_size": 4,
            "train": {"run_dir": str(root / f"run_{name}"), "max_steps": 2, "overwrite": True,
                      "log": {"every": 1, "progress_bar": False, "tensorboard": False}}}
    return from_dict(SD35FlashConfig, {**base, **kw})


def _metrics(root, name):
    return [json.loads(line) for line in (root / f"run_{name}" / "metrics.jsonl").read_text().splitlines()]


def _changed(folder, tiny_pipe) -> float:
    weights = load_file(str(next((folder / "transformer").glob("*.safetensors"))))
    ref = tiny_pipe.transformer.state_dict()
    return max((weights[k] - ref[k]).abs().max().item() for k in weights)


@pytest.fixture(scope="module")
def pre_student(data_dir):
    cfg = _cfg(data_dir, "pre", stage="pretrain", student_optim={"lr": 1e-3})
    cfg.train.log.samples_every = 2
    run_recipe(cfg)
    return data_dir / "pre"


def test_pretrain_stage(data_dir, pre_student, tiny_pipe):
    rows = _metrics(data_dir, "pre")
    assert [r["step"] for r in rows] == [1, 2] and all(r["tg"] > 0 for r in rows)
    assert _changed(data_dir / "pre", tiny_pipe) > 0
    info = json.loads((data_dir / "pre" / "flashdistill.json").read_text())
    assert info["sigmas"] == [1.0, 0.75, 0.5, 0.25] and info["guidance_scale"] == 1.0
    assert info["max_sequence_length"] == 8  # taken from the data it was trained on
    assert (data_dir / "run_pre" / "samples" / "step_00000002.png").is_file()  # periodic sample grid


def test_online_trajectories_match_stored_ones(data_dir, tiny_pipe):
    """Stage 1's on-the-fly teacher solve gives generate-data's stored trajectory for the same noise."""
    from flashdistill.data.batch import collate
    from flashdistill.data.cache import LatentDataset
    from flashdistill.data.generate import teacher_grid
    from flashdistill.sampling import CFG

    data = LatentDataset(data_dir / "data")
    items = [data[i] for i in range(3)]
    cond, noise = collate([it["cond"] for it in items]), torch.stack([it["noise"] for it in items])
    stored = torch.stack([it["trajectory"] for it in items])
    t_grid, positions = teacher_grid(8, data.meta["shift"], [1.0, 0.75, 0.5, 0.25, 0.0])
    teacher = CFG(SD3Adapter(tiny_pipe.transformer), data.null_cond(), 3.0)
    ours = common.teacher_points(teacher, noise, t_grid, positions, cond)
    assert ours.shape == stored.shape and (ours - stored).abs().max() <= 1e-4
    assert (ours[:, 1] - ours[:, 2]).abs().max() > 1e-3  # distinct points, not one state repeated
    wrong = common.teacher_points(CFG(SD3Adapter(tiny_pipe.transformer), data.null_cond(), 1.0), noise, t_grid,
                                  positions, cond)
    assert (wrong - stored).abs().max() > 1e-3  # the comparison can fail: another CFG scale differs


def test_pretrain_online_trajectories(data_dir):
    run_recipe(_cfg(data_dir, "pre_online", stage="pretrain", trajectories="online", teacher_steps=4,
                    guidance_scale=3.0, student_optim={"lr": 1e-3}))
    rows = _metrics(data_dir, "pre_online")
    assert [r["step"] for r in rows] == [1, 2] and all(0 < r["tg"] < float("inf") for r in rows)
    assert json.loads((data_dir / "pre_online" / "flashdistill.json").read_text())["sigmas"][0] == 1.0


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sharing", [True, False])
def test_dmd_stage_all_terms(data_dir, pre_student, sharing, device):
    """Every term, on every device present; every random draw is checked to be made on its generator's device."""
    from devicecheck import StrictRandomDevices

    name = f"dmd_{sharing}_{device}"
    cfg = _cfg(data_dir, name, stage="dmd", init_student=str(data_dir / "pre"), proxy_updates=1,
               timestep_sharing=sharing, disc_blocks=[0, 1], disc_hidden=16, disc_refresh=0.5,
               warmup_noisier=1, gram_weight=1.0, gram_blocks=[1], student_noise="data", ema_decay=0.9, seed=1)
    cfg.train.accelerate.cpu = device == "cpu"
    with StrictRandomDevices() as mode:
        run_recipe(cfg)
    assert mode.checked > 10  # the draws were really seen
    rows = _metrics(data_dir, name)
    assert len(rows) == 2
    for key in ("fm", "disc", "grad_norm/proxy", "grad_norm/disc"):
        assert all(key in r and r[key] == r[key] for r in rows), key
    assert any("adv" in r for r in rows) and any("gram" in r for r in rows)
    if not sharing:
        assert all("dmd" in r for r in rows)  # re-noising gives every step a DMD term


def test_two_step_grid_and_split_range(data_dir, pre_student):
    run_recipe(_cfg(data_dir, "split", stage="dmd", proxy_updates=2, disc_blocks=[1], disc_hidden=16,
                    step_range=[0.5, 1.0], num_steps=4))
    rows = _metrics(data_dir, "split")
    assert {r["step_index"] for r in rows} <= {0.0, 1.0}  # steps at t = 1, .75 only
    assert "adv" in rows[1] and "grad_norm/student" in rows[1]  # the latest generator values on every row
    run_recipe(_cfg(data_dir, "two", stage="dmd", num_steps=2, proxy_updates=1, disc_blocks=[1],
                    disc_hidden=16, init_student=str(data_dir / "pre")))
    info = json.loads((data_dir / "two" / "flashdistill.json").read_text())
    assert info["sigmas"] == [1.0, 0.5]


def test_step_weights_choose_the_trained_steps(data_dir, pre_student):
    """step_weights: a step of weight 0 is never trained; combined with step_range only the kept steps count;
    a weight list of the wrong length is refused by name."""
    run_recipe(_cfg(data_dir, "weighted", stage="dmd", proxy_updates=1, disc_blocks=[1], disc_hidden=16,
                    step_weights=[0.0, 0.0, 1.0, 0.0], init_student=str(pre_student),
                    train={"run_dir": str(data_dir / "run_weighted"), "max_steps": 5, "overwrite": True,
                           "log": {"every": 1, "progress_bar": False, "tensorboard": False}}))
    assert [r["step_index"] for r in _metrics(data_dir, "weighted")] == [2.0] * 5  # uniform: (1/4)^5
    run_recipe(_cfg(data_dir, "weighted_hi", stage="dmd", proxy_updates=1, disc_blocks=[1], disc_hidden=16,
                    step_range=[0.5, 1.0], step_weights=[0.0, 1.0, 1.0, 1.0], init_student=str(pre_student)))
    assert {r["step_index"] for r in _metrics(data_dir, "weighted_hi")} == {1.0}
    with pytest.raises(ConfigError, match="step_weights"):
        _cfg(data_dir, "bad", stage="pretrain", step_weights=[1.0, 1.0])


def test_grid_shift_moves_the_student_grid(data_dir, pre_student):
    """grid_shift 3: the student trains and is saved on (1, .9, .75, .5); at another step count it keeps the shift;
    stage 1 on data without those times is refused, naming the fix."""
    from flashdistill.errors import DataError
    from flashdistill.pipelines.generate import load_setup

    run_recipe(_cfg(data_dir, "shifted", stage="dmd", proxy_updates=1, disc_blocks=[1], disc_hidden=16,
                    grid_shift=3.0, init_student=str(pre_student)))
    info = json.loads((data_dir / "shifted" / "flashdistill.json").read_text())
    assert info["sigmas"] == pytest.approx([1.0, 0.9, 0.75, 0.5]) and info["grid_shift"] == 3.0
    assert {r["step_index"] for r in _metrics(data_dir, "shifted")} <= {0.0, 1.0, 2.0, 3.0}
    assert load_setup(data_dir / "shifted", steps=2).timesteps == pytest.approx([1.0, 0.75, 0.0])
    with pytest.raises(DataError, match="trajectory_grid"):
        run_recipe(_cfg(data_dir, "shifted_pre", stage="pretrain", grid_shift=3.0))


def test_weighted_step_draws_of_two_processes_equal_one(data_dir):
    """Per-sample weighted draws of 2 ranks (half the batch each) concatenate to the 1-process draw; a per-batch
    weighted draw is the same step on both ranks."""
    from flashdistill.recipes.sd35_flash_parts import draw_steps, steps_sampler
    from flashdistill.training.draws import GlobalDraws

    for mode in ("per_sample", "per_batch"):
        cfg = _cfg(data_dir, "w", stage="pretrain", step_weights=[4.0, 2.0, 1.0, 1.0], step_sampling=mode)
        sampler = steps_sampler(cfg, student_grid(4))
        one = GlobalDraws(torch.Generator().manual_seed(3))
        two = [GlobalDraws(torch.Generator().manual_seed(3), rank=r, world_size=2) for r in range(2)]
        for _ in range(3):
            whole = draw_steps(cfg, sampler, one, 8)
            halves = [draw_steps(cfg, sampler, d, 4) for d in two]
            if mode == "per_sample":
                assert torch.equal(torch.cat(halves), whole)
            else:
                assert torch.equal(halves[0], halves[1]) and len(set(whole.tolist())) == 1


def test_student_folder_runs_in_stock_diffusers(data_dir, pre_student):
    from diffusers import StableDiffusion3Pipeline

    folder = data_dir / "pre"
    info = json.loads((folder / "flashdistill.json").read_text())
    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.shift == 1.0
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = pipe(PROMPTS[:2], latents=noise.clone(), sigmas=info["sigmas"], guidance_scale=info["guidance_scale"],
               max_sequence_length=info["max_sequence_length"], height=16, width=16, output_type="latent").images
    text = SD3TextEncoder(pipe, info["max_sequence_length"])
    with torch.no_grad():
        ours = student_sample(SD3Adapter(pipe.transformer), noise, student_grid(4), text.encode(PROMPTS[:2]))
    assert (ours - ref).abs().max() <= 1e-4


def test_backward_simulation_has_no_gradient(tiny_pipe):
    net = common.copy_transformer(tiny_pipe.transformer)
    student = SD3Adapter(net)
    cond = SD3TextEncoder(tiny_pipe, 8).encode(PROMPTS[:2])
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = student_grid(4)
    x = common.backward_simulate(student, noise, grid, 2, cond)
    assert not x.requires_grad and x.grad_fn is None
    # per-sample stops: each sample follows the grid to its own index and stands still there
    mixed = common.backward_simulate(student, noise, grid, torch.tensor([2, 0]), cond)
    assert torch.allclose(mixed[0], x[0], atol=1e-6) and torch.equal(mixed[1], noise[1])
    x_one = common.backward_simulate(student, noise, grid, 1, cond)
    assert (x_one - x).abs().max() > 1e-4
    # the step taken from the simulated point: gradients reach the student only through this one call
    v = student(x, grid[2].expand(2).float(), cond)
    v.pow(2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_merge_with_one_ratio_interpolates_exactly_and_records_it(data_dir, pre_student, capsys):
    from flashdistill.cli import main

    run_recipe(_cfg(data_dir, "branch_high", stage="dmd", proxy_updates=1, disc_blocks=[1], disc_hidden=16,
                    step_range=[0.5, 1.0], student_optim={"lr": 1e-2}, init_student=str(pre_student)))
    out = data_dir / "merged"
    assert main(["merge", "--low", str(pre_student), "--high", str(data_dir / "branch_high"), "--out", str(out),
                 "--ratios", "0.3"]) == 0

    def weights(folder):
        return load_file(str(next((folder / "transformer").glob("*.safetensors"))))

    low, high, merged = weights(pre_student), weights(data_dir / "branch_high"), weights(out)
    assert max((low[k] - high[k]).abs().max().item() for k in low) > 1e-4  # the branches differ
    for k in merged:
        torch.testing.assert_close(merged[k], 0.3 * low[k] + 0.7 * high[k])
    info = json.loads((out / "flashdistill.json").read_text())
    assert info["stage"] == "split_merged" and info["merge_ratio_low"] == 0.3
    assert json.loads((out / "merge_sweep.json").read_text())["rows"][0]["shapes_eval"] is None  # not judged
    # a ratio chosen on a seed set is reported on others: overlapping sets are refused (exit 2, a message)
    assert main(["merge", "--low", str(pre_student), "--high", str(pre_student), "--out", str(out),
                 "--selection-seeds", "1", "--report-seeds", "1,2"]) == 2
    assert "overlap" in capsys.readouterr().err
    assert main(["merge", "--low", str(pre_student), "--high", str(pre_student), "--out", str(out),
                 "--ratios", "x"]) == 2
    assert "--ratios x" in capsys.readouterr().err
    # branches on a shifted grid keep it; branches that sample differently are refused, naming the key
    shifted = []
    for name in ("shift_low", "shift_high"):
        shutil.copytree(pre_student if name == "shift_low" else data_dir / "branch_high", data_dir / name)
        info = json.loads((data_dir / name / "flashdistill.json").read_text())
        info.update(sigmas=[1.0, 0.9, 0.75, 0.5], grid_shift=3.0)
        (data_dir / name / "flashdistill.json").write_text(json.dumps(info))
        shifted.append(str(data_dir / name))
    assert main(["merge", "--low", shifted[0], "--high", shifted[1], "--out", str(data_dir / "m3"),
                 "--ratios", "0.5"]) == 0
    merged_info = json.loads((data_dir / "m3" / "flashdistill.json").read_text())
    assert merged_info["sigmas"] == [1.0, 0.9, 0.75, 0.5] and merged_info["grid_shift"] == 3.0
    assert main(["merge", "--low", shifted[0], "--high", str(data_dir / "branch_high"), "--out",
                 str(data_dir / "mixed"), "--ratios", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "sigmas" in err and shifted[0] in err and not (data_dir / "mixed").exists()


@pytest.mark.parametrize("num_steps", [4, 2])
def test_dmd_stage_with_gradient_checkpointing(data_dir, pre_student, num_steps):
    """Checkpointing recomputes the proxy's forward inside the student's backward: the proxy (and the heads) must
    still be frozen there, or the recomputed graph differs from the saved one (torch raised at step 1). The
    checkpointed run trains the same student as the plain one."""
    weights = {}
    for ckpt in (False, True):
        name = f"dmd_ckpt_{num_steps}_{ckpt}"
        cfg = _cfg(data_dir, name, stage="dmd", init_student=str(data_dir / "pre"), proxy_updates=1,
                   num_steps=num_steps, disc_blocks=[0, 1], disc_hidden=16, gram_weight=1.0, gram_blocks=[1],
                   student_noise="data", student_optim={"lr": 1e-3})
        cfg.train.gradient_checkpointing = ckpt
        run_recipe(cfg)
        rows = _metrics(data_dir, name)
        assert len(rows) == 2 and all(r["grad_norm/student"] > 0 for r in rows)
        weights[ckpt] = load_file(str(next((data_dir / name / "transformer").glob("*.safetensors"))))
    diff = max((weights[True][k] - weights[False][k]).abs().max().item() for k in weights[False])
    moved = max((weights[False][k] - load_file(str(next((data_dir / "pre" / "transformer").glob("*.safetensors"))))[k])
                .abs().max().item() for k in weights[False])
    assert moved > 1e-4 and diff < 1e-3 * moved
