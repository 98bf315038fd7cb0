"""UNet-nano / PixArt-nano ``train-teacher`` at toy size: only the denoiser trains, the export is a stock pipeline
that diffusers loads and ``flashdistill eval`` judges, and the SD3-only recipe refuses it by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.cli import main


@pytest.fixture(scope="module", params=["unet", "pixart"])
def trained(request, tmp_path_factory):
    backbone = request.param
    root = tmp_path_factory.mktemp(backbone)
    args = ["train-teacher", "--config", f"configs/{backbone}_nano_teacher.yaml", "pool_size=64", "batch_size=4",
            f"out={root / 'out'}", f"train.run_dir={root / 'run'}", "train.max_steps=3", "train.checkpoint.every=2",
            "train.log.samples_every=0", "guidance_scale=3.0"]
    assert main(args) == 0
    return backbone, root, args


def _stock_class(backbone):
    from diffusers import PixArtAlphaPipeline, StableDiffusionPipeline

    return StableDiffusionPipeline if backbone == "unet" else PixArtAlphaPipeline


def test_export_is_a_stock_pipeline_and_only_the_denoiser_trained(trained):
    from flashdistill.models.backbones import denoiser_of
    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline
    from flashdistill.shapes.vp_teacher import sample_stock

    backbone, root, _ = trained
    out = root / "out"
    settings = json.loads((out / "flashdistill.json").read_text())
    assert settings["guidance_scale"] == 3.0 and settings["backbone"] == backbone
    pipe = _stock_class(backbone).from_pretrained(out)
    fresh = build_vp_nano_pipeline(backbone, seed=0)  # the same initialisation the run started from
    for name in ("vae", "text_encoder"):
        for (k, a), b in zip(getattr(pipe, name).state_dict().items(), getattr(fresh, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} changed: the VAE and text encoder are SD3-nano's, frozen"
    moved = [k for (k, a), b in zip(denoiser_of(pipe).state_dict().items(), denoiser_of(fresh).state_dict().values())
             if not torch.equal(a, b)]
    assert moved, "the denoiser did not train"
    assert pipe.vae.config.shift_factor is None  # stock SD / PixArt pipelines decode without a shift
    assert not json.loads((out / "model_index.json").read_text()).get("requires_safety_checker", False)
    img = sample_stock(pipe, ["a red circle"], 2, settings["guidance_scale"], settings["max_sequence_length"])
    assert img.shape == (1, 3, 32, 32) and np.isfinite(img.numpy()).all()


def test_resume_continues_and_export_from_checkpoint(trained, tmp_path):
    from safetensors.torch import load_file

    backbone, root, args = trained
    more = [a for a in args if not a.startswith("train.max_steps")] + ["train.max_steps=4", "--resume"]
    assert main(more) == 0
    steps = [json.loads(line)["step"] for line in (root / "run" / "metrics.jsonl").read_text().splitlines()
             if "eps" in line]
    assert steps[-1] == 4 and steps.count(3) == 1  # continued, not restarted
    ckpt = sorted((root / "run" / "checkpoints").iterdir())[-1]
    out = tmp_path / "exported"
    assert main(["train-teacher", "--config", f"configs/{backbone}_nano_teacher.yaml", "stages=[export]",
                 f"export_from={ckpt}", f"out={out}"]) == 0
    ema = load_file(str(ckpt / "ema" / "denoiser_ema.safetensors"))
    sub = "unet" if backbone == "unet" else "transformer"
    exported = load_file(str(out / sub / "diffusion_pytorch_model.safetensors"))
    # the checkpoint's EMA, cast to the config's export_dtype (UNet-nano ships fp16)
    assert exported and all(torch.equal(ema[k].to(exported[k].dtype), exported[k]) for k in exported)
    assert set(ema) - set(exported) <= {"pos_embed.pos_embed"}  # PixArt's non-persistent positional table


def test_eval_judges_the_vp_teacher_and_sd35_flash_refuses_it(trained, tmp_path, capsys):
    _, root, _ = trained
    out = root / "out"
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(out), "--steps", "2", "--n-per-category", "1", "--seeds", "1",
                 "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    grid = scores["result"]["timesteps"]
    assert len(grid) == 3 and grid[-1] == 0.0 and 0.8 < grid[0] < 1.0  # the VP "trailing" grid, index 999 first
    code = main(["distill", "--config", "configs/sd35_flash/nano_pretrain.yaml", f"teacher={out}",
                 f"train.run_dir={tmp_path / 'run'}", "train.max_steps=1"])
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and "rectified-flow" in err


def test_training_draws_name_their_device(tmp_path):
    """Every random draw of the VP teacher loop is made on its generator's device (CUDA-safe), checked on CPU."""
    from devicecheck import StrictRandomDevices

    from flashdistill.config import from_dict
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, train

    cfg = from_dict(VPTeacherConfig, {"backbone": "unet", "pool_size": 64, "batch_size": 4, "out": str(tmp_path / "o"),
                                      "train": {"run_dir": str(tmp_path / "r"), "max_steps": 1,
                                                "log": {"progress_bar": False, "tensorboard": False}}})
    with StrictRandomDevices() as mode:
        train(cfg)
    assert mode.checked >= 3


def test_fp16_export_halves_the_denoiser_and_loads_as_fp32(tmp_path):
    from safetensors import safe_open

    from flashdistill.models.backbones import denoiser_of
    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, export

    pipe = build_vp_nano_pipeline("unet", seed=0)
    sizes = {}
    for dtype in ("float32", "float16"):
        out = export(pipe, VPTeacherConfig(out=str(tmp_path / dtype), export_dtype=dtype))
        sizes[dtype] = (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert sizes["float16"] < 0.55 * sizes["float32"]
    assert denoiser_of(pipe).dtype == torch.float32  # the model being trained is untouched
    with safe_open(str(tmp_path / "float16" / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    from diffusers import StableDiffusionPipeline

    loaded = StableDiffusionPipeline.from_pretrained(tmp_path / "float16")  # stock, no dtype given
    assert loaded.unet.dtype == torch.float32


def test_rebuilt_pipeline_keeps_its_safety_checker_setting_without_warning(trained, diffusers_messages):
    """Rebuilding a safety-checker-free SD pipeline with a component replaced (export, LoRA students, merge-lora)
    keeps requires_safety_checker false and says nothing; the plain constructor warns."""
    from flashdistill.pipelines.stock import rebuild

    backbone, root, _ = trained
    pipe = _stock_class(backbone).from_pretrained(root / "out")
    new = rebuild(pipe, scheduler=pipe.scheduler)
    warned = [m for m in diffusers_messages if "safety checker" in m]
    if backbone == "unet":
        type(pipe)(**pipe.components)
        assert [m for m in diffusers_messages if "safety checker" in m], "the check cannot see the warning"
    assert not warned and type(new) is type(pipe)
    assert not new.config.get("requires_safety_checker", False)


def test_loss_weight_turns_the_target_error_into_a_clamped_x0_error():
    from flashdistill.shapes.vp_teacher import loss_weight

    snr = torch.tensor([1e-4, 0.01, 0.5, 1.0, 3.0, 5.0, 50.0])
    a = snr / (1 + snr)  # ᾱ of each SNR
    # min-SNR-γ alone (floor 0): ε weight min(SNR, γ) / SNR
    torch.testing.assert_close(loss_weight(snr, 5.0), torch.tensor([1, 1, 1, 1, 1, 1, 0.1]))
    # with a floor the x0 weight (ε weight · SNR) is clamp(SNR, floor, γ): 1 at every SNR below 1
    w = loss_weight(snr, 5.0, floor=1.0)
    torch.testing.assert_close(w * snr, snr.clamp(1.0, 5.0))
    assert w[0] == pytest.approx(1e4) and w[3] == 1 and w[-1] == pytest.approx(0.1)
    # the same x0 error e seen through each parametrisation gets the same weighted loss, clamp(SNR, 1, γ) · e²
    e = torch.tensor(0.3)
    eps_err, v_err = e * snr.sqrt(), e / (1 - a).sqrt()  # x0 = (x - √(1-ᾱ) ε) / √ᾱ ; x0 = √ᾱ x - √(1-ᾱ) v
    want = snr.clamp(1.0, 5.0) * e**2
    torch.testing.assert_close(w * eps_err**2, want)
    torch.testing.assert_close(loss_weight(snr, 5.0, 1.0, "v_prediction") * v_err**2, want)
    torch.testing.assert_close(loss_weight(snr, 0.0, floor=1.0), torch.ones_like(snr))  # γ = 0: plain MSE


def test_training_target_is_what_the_stock_scheduler_reads():
    from flashdistill.shapes.vp_nano import ddim_scheduler
    from flashdistill.shapes.vp_teacher import training_target

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    idx = torch.tensor([5, 500, 999])
    sched = ddim_scheduler("pixart", "v_prediction")
    a = sched.alphas_cumprod[idx].view(-1, 1, 1, 1)
    torch.testing.assert_close(training_target(x0, noise, a, "v_prediction"), sched.get_velocity(x0, noise, idx))
    assert training_target(x0, noise, a, "epsilon") is noise


def test_v_prediction_teacher_exports_a_v_scheduler_that_stock_diffusers_samples(tmp_path):
    from diffusers import PixArtAlphaPipeline

    from flashdistill.config import from_dict
    from flashdistill.shapes import vp_teacher

    cfg = from_dict(vp_teacher.VPTeacherConfig, {
        "backbone": "pixart", "pool_size": 64, "batch_size": 4, "out": str(tmp_path / "o"),
        "prediction_type": "v_prediction",
        "train": {"run_dir": str(tmp_path / "r"), "max_steps": 1, "log": {"progress_bar": False, "every": 1,
                                                                         "tensorboard": False}}})
    pipe = PixArtAlphaPipeline.from_pretrained(vp_teacher.train(cfg))
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert "v" in metrics[-1] and "eps" not in metrics[-1]
    img = vp_teacher.sample_stock(pipe, ["a red circle"], 2, 2.0, 16)
    assert img.shape == (1, 3, 32, 32) and np.isfinite(img.numpy()).all()


def test_snr_floor_is_validated_by_name(tmp_path):
    from flashdistill.config import ConfigError, load_config
    from flashdistill.shapes.vp_teacher import VPTeacherConfig

    with pytest.raises(ConfigError, match="snr_floor"):
        load_config(VPTeacherConfig, None, ["snr_floor=6", "snr_gamma=5"])
    with pytest.raises(ConfigError, match="snr_floor"):
        load_config(VPTeacherConfig, None, ["snr_floor=1", "snr_gamma=0"])
    assert load_config(VPTeacherConfig, None, ["snr_floor=1"]).snr_floor == 1.0


def test_pixart_t5_inside_the_trained_module_encodes_as_the_stock_pipeline():
    """PixArtWithText's tokens + T5 give exactly the stock encode_prompt's embeddings and mask (the empty prompt
    included), and its output is the plain denoiser call on them."""
    from flashdistill.models.backbones import denoiser_of
    from flashdistill.shapes.vp_denoiser import PixArtWithText, call_denoiser, t5_tokens
    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline
    from flashdistill.shapes.vp_teacher import encode_prompts

    pipe = build_vp_nano_pipeline("pixart", seed=0)
    prompts = ["A red circle ", "", "two blue squares above a green cross"]
    embeds, mask = encode_prompts(pipe, prompts, 16)
    ids, mask2 = t5_tokens(pipe, prompts, 16, torch.device("cpu"))
    both = PixArtWithText(denoiser_of(pipe), pipe.text_encoder)
    torch.testing.assert_close(mask2, mask)
    torch.testing.assert_close(both.encode(ids, mask2), embeds)
    x, tau = torch.randn(3, 4, 16, 16), torch.tensor([999.0, 500.0, 3.0])
    torch.testing.assert_close(both(x, tau, ids, mask2), call_denoiser(denoiser_of(pipe), x, tau, embeds, mask))


def test_train_text_encoder_trains_and_exports_pixarts_t5(tmp_path):
    from diffusers import PixArtAlphaPipeline

    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline

    base = [f"out={tmp_path / 'out'}", f"train.run_dir={tmp_path / 'run'}", "pool_size=64", "batch_size=4",
            "train.max_steps=2", "train.log.samples_every=0", "optim.lr=1e-2", "optim.warmup_steps=0"]
    assert main(["train-teacher", "--config", "configs/pixart_nano_teacher.yaml", "train_text_encoder=true",
                 *base]) == 0
    sd3_t5 = build_vp_nano_pipeline("pixart", seed=0).text_encoder.state_dict()
    out = PixArtAlphaPipeline.from_pretrained(tmp_path / "out")  # stock class, the trained T5 inside
    moved = max((v - sd3_t5[k]).abs().max().item() for k, v in out.text_encoder.state_dict().items())
    assert moved > 1e-4
    # the export stage rebuilds the same pair from the checkpoint's EMA
    ck = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert main(["train-teacher", "--config", "configs/pixart_nano_teacher.yaml", "train_text_encoder=true",
                 "stages=[export]", f"export_from={ck}", f"out={tmp_path / 'again'}"]) == 0
    again = PixArtAlphaPipeline.from_pretrained(tmp_path / "again")
    for k, v in out.text_encoder.state_dict().items():
        torch.testing.assert_close(again.text_encoder.state_dict()[k], v)
    # continuing from that folder (init_from) starts from its trained T5, not SD3-nano's
    from flashdistill.config import load_config
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, _build

    cont = _build(load_config(VPTeacherConfig, "configs/pixart_nano_teacher.yaml", [f"init_from={tmp_path / 'out'}"]))
    for k, v in out.text_encoder.state_dict().items():
        torch.testing.assert_close(cont.text_encoder.state_dict()[k], v)


def test_train_text_encoder_is_for_pixart_only():
    from flashdistill.config import ConfigError, load_config
    from flashdistill.shapes.vp_teacher import VPTeacherConfig

    with pytest.raises(ConfigError, match="train_text_encoder"):
        load_config(VPTeacherConfig, None, ["backbone=unet", "train_text_encoder=true"])


def test_pixart_size_keys_build_train_export_and_continue(tmp_path):
    from diffusers import PixArtAlphaPipeline

    from flashdistill.config import ConfigError, load_config
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, _build, export_checkpoint

    base = [f"out={tmp_path / 'out'}", f"train.run_dir={tmp_path / 'run'}", "pool_size=64", "batch_size=4",
            "train.max_steps=2", "train.log.samples_every=0", "pixart_layers=3", "pixart_heads=6"]
    assert main(["train-teacher", "--config", "configs/pixart_nano_teacher.yaml", *base]) == 0
    net = PixArtAlphaPipeline.from_pretrained(tmp_path / "out").transformer  # the stock class reads its size
    assert (net.config.num_layers, net.config.num_attention_heads) == (3, 6)
    assert len(net.transformer_blocks) == 3 and net.transformer_blocks[0].attn2.to_k.in_features == 6 * 32
    # init_from continues the folder at its own size, without the keys; sizes that disagree are refused by name
    cont = _build(load_config(VPTeacherConfig, "configs/pixart_nano_teacher.yaml", [f"init_from={tmp_path / 'out'}"]))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(cont.transformer.state_dict()[k], v)
    with pytest.raises(ConfigError, match="pixart_heads = 8"):
        _build(load_config(VPTeacherConfig, "configs/pixart_nano_teacher.yaml",
                           [f"init_from={tmp_path / 'out'}", "pixart_heads=8"]))
    # the export stage needs the run's sizes: without them it names the keys
    ck = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    with pytest.raises(ConfigError, match="pixart_layers / pixart_heads"):
        export_checkpoint(load_config(VPTeacherConfig, "configs/pixart_nano_teacher.yaml",
                                      ["stages=[export]", f"export_from={ck}", f"out={tmp_path / 'again'}"]))
    export_checkpoint(load_config(VPTeacherConfig, "configs/pixart_nano_teacher.yaml",
                                  ["stages=[export]", f"export_from={ck}", f"out={tmp_path / 'again'}",
                                   "pixart_layers=3", "pixart_heads=6"]))
    assert PixArtAlphaPipeline.from_pretrained(tmp_path / "again").transformer.config.num_attention_heads == 6


def test_pixart_size_keys_are_for_pixart_only():
    from flashdistill.config import ConfigError, load_config
    from flashdistill.shapes.vp_teacher import VPTeacherConfig

    with pytest.raises(ConfigError, match="pixart_layers"):
        load_config(VPTeacherConfig, None, ["backbone=unet", "pixart_layers=8"])
    load_config(VPTeacherConfig, None, ["backbone=unet"])  # the defaults are fine
