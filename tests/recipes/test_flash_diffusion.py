"""Flash Diffusion runs on the tiny pipeline (every term on), writes a LoRA folder stock diffusers loads with
``load_lora_weights``, and every config key is used or refused."""

from __future__ import annotations

import json

import pytest
import torch
from tinydata import make_tiny_data

from flashdistill.config import ConfigError, from_dict
from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder
from flashdistill.recipes.flash_diffusion import FlashDiffusionConfig, phase_of, run_recipe
from flashdistill.sampling import student_sample
from flashdistill.timesteps import student_grid


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("flashdiff"))


def _cfg(root, name, drop=(), **kw):
    base = {"teacher": "tiny", "data": str(root / "data"), "out": str(root / name), "batch_size": 4, "K": 8,
            "phase_every": 1, "disc_blocks": [0, 1], "disc_hidden": 8, "lora_rank": 4, "lora_alpha": 8.0,
            "guidance_range": [1.0, 4.0], "student_optim": {"lr": 1e-2}, "disc_optim": {"lr": 1e-3},
            "train": {"run_dir": str(root / f"run_{name}"), "max_steps": 4, "overwrite": True,
                      "log": {"every": 1, "progress_bar": False, "tensorboard": False}}}
    for key, value in kw.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    for key in drop:
        base.pop(key)
    return from_dict(FlashDiffusionConfig, base)


def _metrics(root, name):
    return [json.loads(line) for line in (root / f"run_{name}" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lora_student(data_dir):
    run_recipe(_cfg(data_dir, "lora"))
    return data_dir / "lora"


def test_all_phases_and_terms_run(data_dir, lora_student):
    rows = _metrics(data_dir, "lora")
    assert [r["phase"] for r in rows] == [0, 1, 2, 3]  # phase_every = 1
    assert [r["lam_adv"] for r in rows] == [0.0, 0.1, 0.2, 0.3] and [r["lam_dmd"] for r in rows] == [0, .3, .5, .7]
    assert "adv" not in rows[0] and "dmd" not in rows[0]  # the warm-up phase is distillation only
    assert all(r["distill"] > 0 and "disc" in r for r in rows) and rows[-1]["adv"] > 0 and rows[-1]["dmd"] >= 0
    assert rows[0]["t_mean"] <= 0.5 + 1 / 8  # warm-up on the least-noisy modes
    info = json.loads((lora_student / "flashdistill.json").read_text())
    assert info["kind"] == "lora" and info["base"] == "tiny" and info["sigmas"] == [1.0, 0.75, 0.5, 0.25]
    assert info["guidance_scale"] == 1.0 and info["max_sequence_length"] == 8 and info["sampler"] == "stochastic"
    assert info["scheduler"] == {"shift": 1.0, "stochastic_sampling": True}
    p = info["parameters"]
    assert 0 < p["trainable"] < p["total"]


def test_stock_load_lora_weights_reproduces_the_recipe_sampler(lora_student, data_dir):
    """``StableDiffusion3Pipeline`` + ``load_lora_weights`` + the recorded sigmas = our sampler on the same noise."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from flashdistill.models.lora import add_lora
    from flashdistill.models.tiny import tiny_sd3_pipeline
    from flashdistill.pipelines.folders import load_pipeline

    info = json.loads((lora_student / "flashdistill.json").read_text())
    pipe = tiny_sd3_pipeline(seed=0)  # stock: a fresh base, adapters loaded by diffusers
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(lora_student)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, **info["scheduler"])
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    prompts = ["a red circle", "two blue squares"]
    # StableDiffusion3Pipeline does not hand its generator to scheduler.step: the stochastic Euler's fresh noise
    # comes from torch's global generator, so seed that
    torch.manual_seed(7)
    stock = pipe(prompts, sigmas=info["sigmas"], guidance_scale=1.0, latents=noise.clone(), output_type="latent",
                 max_sequence_length=8, height=16, width=16).images
    # the same weights through our adapter and sampler
    from safetensors.torch import load_file

    ours_pipe = tiny_sd3_pipeline(seed=0)
    net = add_lora(ours_pipe.transformer, rank=4, alpha=8.0)
    saved = load_file(str(lora_student / "pytorch_lora_weights.safetensors"))
    from peft.utils import set_peft_model_state_dict

    set_peft_model_state_dict(net, {k.removeprefix("transformer."): v for k, v in saved.items()})
    cond = SD3TextEncoder(ours_pipe, 8).encode(prompts)
    with torch.no_grad():
        # the same fresh noises in the same order (one (B, C, H, W) draw per re-noising)
        torch.manual_seed(7)
        ours = student_sample(SD3Adapter(net), noise, student_grid(4), cond, mode="stochastic")
        euler = student_sample(SD3Adapter(net), noise, student_grid(4), cond)
    torch.testing.assert_close(stock, ours, rtol=1e-4, atol=1e-5)  # output_type="latent": our x0's space
    assert (ours - noise).abs().mean() > 0.1 and (ours - euler).abs().max() > 1e-3  # the sampler matters
    # and our own loader (what `flashdistill sample --model <lora folder>` and eval use) agrees
    ours_loaded = load_pipeline(lora_student)
    torch.manual_seed(7)
    again = ours_loaded(prompts, sigmas=info["sigmas"], guidance_scale=1.0, latents=noise.clone(),
                        output_type="latent", max_sequence_length=8, height=16, width=16).images
    torch.testing.assert_close(again, stock, rtol=1e-5, atol=1e-6)


def test_lora_changes_the_output_and_the_base_stays_the_teacher(lora_student):
    from flashdistill.models.tiny import tiny_sd3_pipeline
    from flashdistill.pipelines.folders import load_pipeline

    pipe = load_pipeline(lora_student)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = {"sigmas": [1.0, 0.5], "guidance_scale": 1.0, "output_type": "latent", "max_sequence_length": 8,
          "height": 16, "width": 16}
    torch.manual_seed(1)  # the stochastic sampler's fresh noise comes from torch's global generator
    with_lora = pipe(["a red circle"], latents=noise.clone(), **kw).images
    pipe.disable_lora()
    torch.manual_seed(1)
    without = pipe(["a red circle"], latents=noise.clone(), **kw).images
    teacher = tiny_sd3_pipeline(seed=0)
    teacher.set_progress_bar_config(disable=True)
    teacher.scheduler = teacher.scheduler.from_config(teacher.scheduler.config, shift=1.0, stochastic_sampling=True)
    torch.manual_seed(1)
    base = teacher(["a red circle"], latents=noise.clone(), **kw).images
    assert (with_lora - without).abs().max() > 1e-3
    torch.testing.assert_close(without, base)  # adapters off = the teacher: no second copy of the base weights


def test_full_student_and_proxy_and_perceptual_variants(data_dir):
    run_recipe(_cfg(data_dir, "full", student="full", lora_rank=16, lora_alpha=None, dmd_fake="proxy",
                    proxy_optim={"lr": 1e-3}, adv_loss="hinge", train={"max_steps": 2}))
    assert (data_dir / "full" / "model_index.json").is_file()
    assert "fm" in _metrics(data_dir, "full")[-1]
    cfg = _cfg(data_dir, "fixed", guidance_range=[3.0, 3.0], timestep_dist="uniform", adv_weights=[0, 0, 0, 0],
               dmd_weights=[0, 0, 0, 0], drop=("disc_blocks", "disc_hidden", "disc_optim"), train={"max_steps": 2})
    run_recipe(cfg)
    assert "disc" not in _metrics(data_dir, "fixed")[-1]  # no adversarial phase: no discriminator is built


def test_lora_student_with_gradient_checkpointing_trains_the_same(data_dir):
    """The teacher is the student's module with its adapters off; checkpointing must not recompute it in the
    backward with them on (``teacher_mode`` keeps its activations instead): same student as without."""
    from safetensors.torch import load_file

    weights = {}
    for ckpt in (False, True):
        name = f"lora_ckpt_{ckpt}"
        run_recipe(_cfg(data_dir, name, train={"gradient_checkpointing": ckpt}))
        assert _metrics(data_dir, name)[-1]["adv"] > 0  # the adversarial term ran through the teacher
        weights[ckpt] = load_file(str(next((data_dir / name).glob("*.safetensors"))))
    diff = max((weights[True][k] - weights[False][k]).abs().max().item() for k in weights[False])
    scale = max(weights[False][k].abs().max().item() for k in weights[False])
    assert diff < 1e-4 * scale


def test_phase_schedule():
    cfg = FlashDiffusionConfig(phase_every=10)
    assert [phase_of(cfg, it) for it in (1, 10, 11, 30, 31, 1000)] == [0, 0, 1, 2, 3, 3]


@pytest.mark.parametrize("kw, match", [
    ({"student": "full", "lora_rank": 4}, "lora_rank"),
    ({"timestep_dist": "uniform", "timestep_var": 2.0}, "timestep_var"),
    ({"adv_weights": [0, 0, 0, 0], "adv_loss": "hinge"}, "adv_loss"),
    ({"proxy_optim": {"lr": 1.0}}, "proxy_optim"),
    ({"adv_weights": [0, 0.1]}, "adv_weights"),
    ({"K": 10}, "multiple of 4"),
    ({"guidance_range": [5.0, 2.0]}, "guidance_range"),
    ({"distill_loss": "lpips"}, "lpips_weights"),
    ({"mode_weights": [[0.5, 0.5, 0, 0.1]] * 4}, r"mode_weights\[0\]"),
    ({"disc_t_levels": [0.5, 1.0]}, "disc_t_levels"),
])
def test_config_refuses_unused_or_bad_keys(kw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(FlashDiffusionConfig, {"data": "x", **kw})


def test_merge_lora_and_sample_commands(lora_student, tmp_path, capsys):
    """``merge-lora`` writes a full folder that equals the LoRA pipeline; ``sample`` runs a LoRA folder directly."""
    from diffusers import StableDiffusion3Pipeline

    from flashdistill.cli import main
    from flashdistill.pipelines.folders import load_pipeline

    assert main(["merge-lora", "--lora", str(lora_student), "--out", str(tmp_path / "merged")]) == 0
    merged = StableDiffusion3Pipeline.from_pretrained(tmp_path / "merged")
    merged.set_progress_bar_config(disable=True)
    info = json.loads((tmp_path / "merged" / "flashdistill.json").read_text())
    assert info["kind"] == "student" and info["sigmas"] == [1.0, 0.75, 0.5, 0.25]
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    kw = {"sigmas": info["sigmas"], "guidance_scale": 1.0, "output_type": "latent", "max_sequence_length": 8,
          "height": 16, "width": 16}
    torch.manual_seed(2)
    a = merged(["a red circle"], latents=noise.clone(), **kw).images
    lora_pipe = load_pipeline(lora_student)
    torch.manual_seed(2)
    b = lora_pipe(["a red circle"], latents=noise.clone(), **kw).images
    assert merged.scheduler.config.stochastic_sampling and merged.scheduler.config.shift == 1.0
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert main(["merge-lora", "--lora", str(tmp_path / "merged"), "--out", str(tmp_path / "m2")]) == 2
    assert "not a LoRA student folder" in capsys.readouterr().err
    assert main(["sample", "--model", str(lora_student), "--prompt", "a red circle",
                 "--out", str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 1


def test_unsupported_teacher_family_is_refused_by_name(tmp_path, capsys):
    from flashdistill.cli import main

    (tmp_path / "flux").mkdir()
    (tmp_path / "flux" / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    assert main(["sample", "--model", str(tmp_path / "flux"), "--prompt", "a red circle"]) == 2
    err = capsys.readouterr().err
    assert "FluxPipeline" in err and str(tmp_path / "flux") in err and "Traceback" not in err


def test_shapes_images_are_real_pairs_generate_data_reads(tmp_path, capsys):
    from flashdistill.cli import main
    from flashdistill.data.images import ImageCaptionDataset
    from flashdistill.shapes.captions import parse_caption

    assert main(["shapes-prompts", "--images", str(tmp_path / "img"), "--n", "5"]) == 0
    pairs = ImageCaptionDataset(tmp_path / "img")
    assert len(pairs) == 5 and pairs[0]["image"].shape == (3, 32, 32)
    assert all(parse_caption(pairs[i]["prompt"]) for i in range(5))
    assert main(["shapes-prompts", "--n", "5"]) == 2 and "--out" in capsys.readouterr().err


def test_data_from_another_teacher_is_refused(tmp_path, data_dir):
    from flashdistill.data.generate import GenerateConfig, generate
    from flashdistill.errors import DataError
    from flashdistill.models.tiny import tiny_sd3_pipeline

    other = tiny_sd3_pipeline(seed=1)  # same architecture, other weights
    other.set_progress_bar_config(disable=True)
    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    generate(GenerateConfig(out=str(tmp_path / "other"), prompts=str(tmp_path / "p.txt"), model="tiny", num_steps=2,
                            resolution=16, max_sequence_length=8, shard_size=2, batch_size=2), pipe=other,
             progress=False)
    with pytest.raises(DataError, match=r"made by another teacher .*'tiny'"):
        run_recipe(_cfg(data_dir, "other", data=str(tmp_path / "other")))
    assert not (data_dir / "other").exists()


def test_grid_follows_the_teacher_schedulers_shift(data_dir):
    """grid_shift: null takes the teacher's own grid (tiny: shift 3); the student's sigmas are its shifted 4 steps."""
    from flashdistill.flow import shift_t

    run_recipe(_cfg(data_dir, "shifted", grid_shift=None, train={"max_steps": 1}))
    info = json.loads((data_dir / "shifted" / "flashdistill.json").read_text())
    expected = shift_t(torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64), 3.0).tolist()
    assert info["grid_shift"] == 3.0 and info["sigmas"] == pytest.approx(expected)
    rows = _metrics(data_dir, "shifted")
    assert rows[0]["t_mean"] > 0.5  # the warm-up's modes at 1/4 and 1/2 of the grid are t = 0.5 and 0.75 here
