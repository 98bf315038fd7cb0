"""Flash Diffusion on variance-preserving teachers (a UNet ``StableDiffusionPipeline`` and a ``PixArtAlphaPipeline``
with random denoisers): the modes are fractions of the DDPM index range, the discriminator taps the UNet encoder or
PixArt blocks, and the LoRA folder runs in the stock pipeline (UNet: ``load_lora_weights``; PixArt: peft) with the
recorded scheduler and timesteps, reproducing our own sampler on the same noise."""

from __future__ import annotations

import json

import pytest
import torch

from flashdistill.cli import main
from flashdistill.config import from_dict
from flashdistill.models.backbones import adapter_for, text_encoder_for
from flashdistill.recipes.flash_diffusion import FlashDiffusionConfig, run_recipe
from flashdistill.sampling import student_sample

DISC_BLOCKS = {"unet": [0, 3], "pixart": [1, 5], "sdxl": [1, 2]}  # UNets: down blocks and the mid block (last)


@pytest.fixture(scope="module", params=["unet", "pixart", "sdxl"])
def vp_student(request, tmp_path_factory):
    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, export

    backbone = request.param
    root = tmp_path_factory.mktemp(f"fd_{backbone}")
    if backbone == "sdxl":
        from flashdistill.models.tiny import tiny_sdxl_pipeline

        teacher = root / "teacher"
        tiny_sdxl_pipeline(seed=0).save_pretrained(teacher)
        (teacher / "flashdistill.json").write_text('{"guidance_scale": 3.0, "resolution": 32}')
    else:
        pipe = build_vp_nano_pipeline(backbone, seed=0)
        teacher = export(pipe, VPTeacherConfig(backbone=backbone, out=str(root / "teacher"), guidance_scale=3.0))
    assert main(["shapes-prompts", "--images", str(root / "img"), "--n", "8"]) == 0
    assert main(["generate-data", f"model={teacher}", f"images={root / 'img'}", f"out={root / 'data'}",
                 "shard_size=4", "batch_size=4"]) == 0
    cfg = from_dict(FlashDiffusionConfig, {
        "teacher": str(teacher), "data": str(root / "data"), "out": str(root / "lora"), "batch_size": 4, "K": 8,
        "grid_shift": None, "phase_every": 1, "disc_blocks": DISC_BLOCKS[backbone], "disc_hidden": 8,
        "lora_rank": 4, "lora_alpha": 8.0, "guidance_range": [1.0, 4.0], "student_optim": {"lr": 1e-2},
        "disc_optim": {"lr": 1e-3}, "train": {"run_dir": str(root / "run"), "max_steps": 4, "overwrite": True,
                                               "log": {"every": 1, "progress_bar": False, "tensorboard": False}}})
    run_recipe(cfg)
    return backbone, root


def test_vp_recipe_runs_every_phase_on_the_ddpm_index_grid(vp_student):
    backbone, root = vp_student
    rows = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == [0, 1, 2, 3] and rows[-1]["adv"] > 0 and "disc" in rows[-1]
    assert rows[0]["t_mean"] <= 0.62 + 0.05  # warm-up on the modes at indices 249 / 499 (flow t <= 0.62)
    info = json.loads((root / "lora" / "flashdistill.json").read_text())
    assert info["timesteps"] == [999, 749, 499, 249] and info["backbone"] == backbone
    assert info["scheduler_class"] == "LCMScheduler" and info["guidance_scale"] == 1.0
    assert info["scheduler"] == {"original_inference_steps": 4}  # 999/749/499/249 are LCM's own 4-step schedule
    assert len(info["flow_grid"]) == 5 and info["flow_grid"][-1] == 0.0 and 0.8 < info["flow_grid"][0] < 1.0
    card = (root / "lora" / "README.md").read_text()
    assert (root / "lora" / "sample.png").is_file() and "| timesteps | [999, 749, 499, 249] |" in card
    stock = {"unet": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "pixart": "PeftModel"}[backbone]
    assert stock in card and "LCMScheduler.from_config" in card and "timesteps=[999, 749, 499, 249]" in card
    assert ("T5 tokens" in card) == (backbone == "pixart")


def test_stock_lora_load_reproduces_the_recipe_sampler(vp_student, diffusers_messages):
    from flashdistill.pipelines.folders import load_pipeline

    backbone, root = vp_student
    info = json.loads((root / "lora" / "flashdistill.json").read_text())
    pipe = load_pipeline(root / "lora", kinds=("unet", "pixart", "sdxl"))  # the base + stock LoRA load + LCMScheduler
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    prompts = ["a red circle", "two blue squares"]
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    kwargs = {"max_sequence_length": 16, "use_resolution_binning": False, "clean_caption": False} \
        if backbone == "pixart" else {}
    if backbone == "sdxl":  # the stock pipeline would cast the VAE (and so the latents) to fp32 anyway
        kwargs["height"] = kwargs["width"] = 32
    stock = pipe(prompts, timesteps=info["timesteps"], guidance_scale=1.0, latents=latents.clone(),
                 generator=torch.Generator().manual_seed(11), output_type="latent", **kwargs).images
    assert not [m for m in diffusers_messages if "timestep" in m], diffusers_messages  # LCM's off-schedule warning
    grid = torch.tensor(info["flow_grid"], dtype=torch.float64)
    start = grid[0].item()
    x = latents * ((1 - start) ** 2 + start**2) ** 0.5  # the VP start as a flow point
    model, cond = adapter_for(pipe), text_encoder_for(pipe, 16).encode(prompts)
    with torch.no_grad():
        ours = student_sample(model, x, grid, cond, mode="stochastic", generator=torch.Generator().manual_seed(11))
        euler = student_sample(model, x, grid, cond)
    torch.testing.assert_close(ours, stock, rtol=1e-3, atol=1e-3)
    assert (ours - euler).abs().max() > 1e-3  # the recorded sampler matters
    pipe_off = load_pipeline(root / "teacher", kinds=("unet", "pixart", "sdxl"))
    with torch.no_grad():
        teacher_v = adapter_for(pipe_off)(x, grid[:1].float().expand(2), cond)
        student_v = model(x, grid[:1].float().expand(2), cond)
    assert (teacher_v - student_v).abs().max() > 1e-4  # the adapter changed the denoiser


def test_sample_and_eval_commands_run_the_vp_lora_folder(vp_student, tmp_path):
    _, root = vp_student
    assert main(["sample", "--model", str(root / "lora"), "--prompt", "a red circle", "--out",
                 str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 1
    assert main(["eval", "--model", str(root / "lora"), "--n-per-category", "1", "--seeds", "1", "--json",
                 str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["result"]["timesteps"][-1] == 0.0


def test_vp_teacher_refuses_a_flow_grid_shift(vp_student):
    _, root = vp_student
    cfg = from_dict(FlashDiffusionConfig, {"teacher": str(root / "teacher"), "data": str(root / "data"),
                                           "out": str(root / "x"), "grid_shift": 3.0, "K": 8,
                                           "train": {"run_dir": str(root / "runx"), "max_steps": 1}})
    with pytest.raises(Exception, match="grid_shift = 3.0: a shift applies to flow-time grids"):
        run_recipe(cfg)


def test_merge_lora_writes_a_plain_pipeline_that_equals_the_lora(vp_student, tmp_path):
    from diffusers import DiffusionPipeline

    from flashdistill.pipelines.folders import load_pipeline

    backbone, root = vp_student
    assert main(["merge-lora", "--lora", str(root / "lora"), "--out", str(tmp_path / "merged")]) == 0
    merged = DiffusionPipeline.from_pretrained(tmp_path / "merged")  # stock class, no peft, no LoRA layers
    assert not any("lora" in name for name, _ in merged.components["unet" if backbone != "pixart"
                                                                    else "transformer"].named_parameters())
    assert type(merged.scheduler).__name__ == "LCMScheduler"
    lora = load_pipeline(root / "lora", kinds=("unet", "pixart", "sdxl"))
    kw = {"max_sequence_length": 16, "use_resolution_binning": False, "clean_caption": False} \
        if backbone == "pixart" else {}
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    outs = [p(["a red circle"], timesteps=[999, 749, 499, 249], guidance_scale=1.0, latents=latents.clone(),
              generator=torch.Generator().manual_seed(2), output_type="latent", **kw).images for p in (merged, lora)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)


def test_model_card_code_runs_as_written(vp_student, monkeypatch):
    """The card's diffusers lines, executed (fp32 on the CPU here): stock classes only, the student's settings."""
    import re

    _, root = vp_student
    card = (root / "lora" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    code = code.replace("torch.float16", "torch.float32").replace("torch.bfloat16", "torch.float32")
    monkeypatch.chdir(root)  # the card names the folder as "lora" (its own name)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the card's own code is what is under test
    assert scope["image"].size == (32, 32)


def test_a_shipped_teacher_is_recorded_by_name_and_loads_from_any_folder(tmp_path, monkeypatch):
    """A LoRA student of ``unet-nano`` records that name (it once recorded ``<cwd>/unet-nano``, which no folder
    holds, so evaluating the student failed); other teachers are recorded as absolute paths."""
    from flashdistill.assets_paths import ASSETS
    from flashdistill.pipelines.folders import SHIPPED_NAMES, recorded_base, resolve_model

    monkeypatch.chdir(tmp_path)
    for name in SHIPPED_NAMES:
        assert recorded_base(name) == name
    assert resolve_model(recorded_base("unet-nano")) == ASSETS / "unet-nano"
    assert recorded_base("tiny") == "tiny"
    assert recorded_base("teachers/mine") == str(tmp_path / "teachers" / "mine")
