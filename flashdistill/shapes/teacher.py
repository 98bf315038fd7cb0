"""Train the SD3-nano teacher from scratch on Shapes: ``flashdistill train-teacher --config ...``.

Two stages, each a resumable run on the training infrastructure (``flashdistill.training.Run``):

1. **vae**: ``AutoencoderKL`` on Shapes images (MSE + small KL); then its ``shift_factor`` and ``scaling_factor``
   are set from the latent statistics so model latents have zero mean and unit variance.
2. **dit**: the ``SD3Transformer2DModel`` together with the three text encoders, as a rectified-flow model
   (logit-normal timesteps with the SD3 shift) with text-encoder dropout: each encoder's output is replaced,
   independently per sample, by its null output (CLIP: the empty prompt; T5: zeros, what diffusers feeds
   without T5), plus a fully unconditional fraction for classifier-free guidance. An EMA is kept and exported.

The result is written as a diffusers pipeline folder (default ``flashdistill/assets/sd3-nano``) that stock
``StableDiffusion3Pipeline.from_pretrained`` loads offline.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError, register_config
from ..flow import interpolate, shift_t, velocity
from ..models.sd3 import SD3Adapter, SD3TextEncoder
from ..timesteps import LogitNormal, draw_device
from ..training.configs import OptimConfig, TrainConfig

__all__ = ["TeacherConfig", "NanoDenoiser", "train_vae", "train_dit", "trained_vae", "init_from_teacher",
           "export_teacher", "add_args", "run"]


@dataclass
class VAEStage:
    """Autoencoder training."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/teacher/vae", max_steps=400))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=50, schedule="cosine"))
    batch_size: int = field(default=64, metadata={"min": 1})  # images per step
    kl_weight: float = field(default=1e-6, metadata={"min": 0.0})  # weight of the KL term


@dataclass
class DiTStage:
    """Transformer + text encoders, trained jointly by flow matching."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/teacher/dit", max_steps=7500))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=6e-4, warmup_steps=100, schedule="cosine"))
    batch_size: int = field(default=64, metadata={"min": 1})  # samples per step
    logit_mean: float = 0.0  # logit-normal timestep sampling: mean
    logit_std: float = field(default=1.0, metadata={"min": 0.0})  # and standard deviation
    shift: float = field(default=2.0, metadata={"min": 0.0})  # SD3 shift applied to sampled t (and at inference)
    p_drop: list[float] = field(default_factory=lambda: [0.2, 0.2, 0.3])  # per-encoder dropout: CLIP-L, CLIP-G, T5
    p_uncond: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})  # all encoders null (CFG)
    ema_half_life: float = field(default=150.0, metadata={"min": 1.0})  # EMA half-life in steps (exported)
    guidance_scale: float = field(default=1.5, metadata={"min": 1.0})  # CFG of the sample grids; exported default
    # a trained teacher folder (e.g. the shipped one) whose VAE, transformer and text encoders this stage starts
    # from, with a fresh optimiser: continues training where no checkpoint survives (no "vae" stage needed)
    init_from: str | None = None
    sample_prompts: list[str] = field(default_factory=lambda: [
        "a red circle", "two blue squares", "a green triangle above a yellow cross",
        "a purple square to the left of a cyan circle"])  # prompts of the periodic sample grids


@register_config("sd3_nano_teacher")
@dataclass
class TeacherConfig:
    """The SD3-nano teacher of the miniature world."""

    out: str = "flashdistill/assets/sd3-nano"  # the trained pipeline folder written at the end
    pool_size: int = field(default=60000, metadata={"min": 64})  # rendered training scenes (train split)
    seed: int = 0  # model initialisation and data seed
    stages: list[str] = field(default_factory=lambda: ["vae", "dit"])  # which stages to run ("export" too)
    export_from: str | None = None  # stage "export": a dit checkpoint folder whose EMA is written to `out`
    vae: VAEStage = field(default_factory=VAEStage)  # stage 1
    dit: DiTStage = field(default_factory=DiTStage)  # stage 2


class NanoDenoiser(nn.Module):
    """Transformer + the three text encoders as one trained module, so a DDP wrapper sees the whole forward."""

    def __init__(self, pipe, max_sequence_length: int):
        super().__init__()
        self.transformer = pipe.transformer
        self.text_encoders = nn.ModuleList([pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3])
        self.text = SD3TextEncoder(pipe, max_sequence_length)

    def forward(self, x_t, t, prompts, p_drop, p_uncond, generator=None):
        n = len(prompts)
        uncond = torch.rand(n, generator=generator, device=draw_device(generator, "cpu")) < p_uncond
        prompts = ["" if u else p for p, u in zip(prompts, uncond.tolist())]
        cond = self.text.encode_with_dropout(prompts, p_drop, generator=generator)
        return SD3Adapter(self.transformer)(x_t, t, cond)


def _pipe_and_pool(cfg: TeacherConfig):
    from .data import ShapesPool
    from .nano import build_nano_pipeline

    pipe = build_nano_pipeline(seed=cfg.seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe, ShapesPool(cfg.pool_size, seed=cfg.seed, split="train")


def train_vae(cfg: TeacherConfig, pipe, pool) -> None:
    """Stage 1: fit the autoencoder; sets ``shift_factor``/``scaling_factor`` from latent statistics."""
    from ..training.run import Run

    st = cfg.vae
    run = Run(st.train, config=cfg)
    vae = pipe.vae
    slot = run.add_model("vae", vae, st.optim)
    data = run.data_stream("images", pool, batch_size=st.batch_size)
    gen = run.generator("posterior")
    for _ in run.steps():
        x = next(data)["image"].to(run.device)
        posterior = slot.model.encode(x).latent_dist
        z = posterior.sample(gen)
        recon = slot.module.decode(z).sample
        mse = (recon - x).pow(2).mean()
        kl = posterior.kl().mean() / x[0].numel()
        run.update("vae", {"mse": mse, "kl": st.kl_weight * kl})
    vae = run.slots["vae"].module.eval()
    with torch.no_grad():
        x = torch.stack([pool[i]["image"] for i in range(min(2048, len(pool)))]).to(run.device)
        z = torch.cat([vae.encode(c).latent_dist.mode() for c in x.split(256)])
    shift, scale = z.mean().item(), 1.0 / z.std().item()
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    if run.is_main:
        vae.save_pretrained(Path(st.train.run_dir) / "final")
        (Path(st.train.run_dir) / "final" / "latent_stats.json").write_text(
            json.dumps({"shift_factor": shift, "scaling_factor": scale}))


def train_dit(cfg: TeacherConfig, pipe, pool) -> None:
    """Stage 2: transformer + text encoders by flow matching with text-encoder dropout; EMA exported."""

    from ..models.vae import LatentCodec
    from ..sampling import CFG, euler_solve
    from ..training.run import Run
    from .nano import MAX_SEQUENCE_LENGTH

    st = cfg.dit
    pipe.vae = trained_vae(cfg)
    if st.init_from:
        init_from_teacher(pipe, st.init_from)
    run = Run(st.train, config=cfg)
    codec = LatentCodec(run.add_frozen("vae", pipe.vae))
    denoiser = NanoDenoiser(pipe, MAX_SEQUENCE_LENGTH)
    slot = run.add_model("denoiser", denoiser, st.optim)
    ema = run.add_ema("denoiser_ema", of="denoiser", half_life=st.ema_half_life, warmup=True)
    data = run.data_stream("pairs", pool, batch_size=st.batch_size)
    gen = run.generator("noise")
    t_sampler = LogitNormal(st.logit_mean, st.logit_std)

    def samples(step: int):
        text = SD3TextEncoder(pipe, MAX_SEQUENCE_LENGTH)
        with ema.swapped_into(slot.module):
            slot.module.eval()
            prompts = [p for p in st.sample_prompts for _ in range(4)]
            noise = torch.randn(len(prompts), 4, 16, 16, generator=torch.Generator().manual_seed(0), device="cpu")
            model = CFG(SD3Adapter(pipe.transformer), text.null(), st.guidance_scale)
            grid = shift_t(torch.linspace(1, 0, 26), st.shift)
            x0 = euler_solve(model, noise.to(run.device), grid, text.encode(prompts))
            slot.module.train()
        return (codec.decode(x0) + 1) / 2

    run.on_samples(samples)
    for _ in run.steps():
        batch = next(data)
        x0 = codec.encode(batch["image"].to(run.device))
        noise = torch.randn(x0.shape, generator=gen, device=run.device)
        t = shift_t(t_sampler(x0.shape[0], generator=gen, device=run.device), st.shift)
        v = slot.model(interpolate(x0, noise, t), t, batch["prompt"], st.p_drop, st.p_uncond, gen)
        run.update("denoiser", {"fm": (v - velocity(x0, noise)).pow(2).mean()})
    if run.is_main:
        with ema.swapped_into(slot.module):
            export_teacher(pipe, cfg.out, shift=st.shift, guidance_scale=st.guidance_scale)


def trained_vae(cfg: TeacherConfig):
    """The VAE the DiT trains on: ``dit.init_from``'s when continuing a teacher folder, else the "vae" stage's."""
    from diffusers import AutoencoderKL

    if cfg.dit.init_from:
        return AutoencoderKL.from_pretrained(cfg.dit.init_from, subfolder="vae")
    vae_dir = Path(cfg.vae.train.run_dir) / "final"
    if not (vae_dir / "config.json").exists():
        raise FileNotFoundError(f"stage 'dit' needs the trained VAE at {vae_dir}; run stage 'vae' first "
                                "(or start from a trained teacher with dit.init_from=<folder>)")
    return AutoencoderKL.from_pretrained(vae_dir)


def init_from_teacher(pipe, folder: str | Path) -> None:
    """Copy a trained SD3-nano teacher folder's transformer and text-encoder weights into ``pipe``."""
    from ..pipelines.folders import load_pipeline

    src = load_pipeline(folder)
    for name in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3"):
        try:
            getattr(pipe, name).load_state_dict(getattr(src, name).state_dict())
        except RuntimeError as err:
            raise ValueError(f"dit.init_from={folder}: its {name} does not match SD3-nano ({err})") from None


def export_checkpoint(cfg: TeacherConfig, pipe, checkpoint: str | Path) -> Path:
    """Write the teacher from a dit checkpoint's EMA (e.g. to inspect or ship a run that was cut short)."""
    from safetensors.torch import load_file

    from .nano import MAX_SEQUENCE_LENGTH

    ema_file = Path(checkpoint) / "ema" / "denoiser_ema.safetensors"
    if not ema_file.is_file():
        raise FileNotFoundError(f"export_from: no EMA weights at {ema_file}")
    pipe.vae = trained_vae(cfg)
    denoiser = NanoDenoiser(pipe, MAX_SEQUENCE_LENGTH)
    missing, unexpected = denoiser.load_state_dict(load_file(str(ema_file)), strict=False)
    unique = {n for n, _ in denoiser.named_parameters()}  # tied weights (T5's embed_tokens) appear once
    missing = [k for k in missing if k in unique]
    if unexpected or missing:
        raise ValueError(f"{ema_file}: does not match SD3-nano (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return export_teacher(pipe, cfg.out, shift=cfg.dit.shift, guidance_scale=cfg.dit.guidance_scale)


def export_teacher(pipe, out: str | Path, shift: float, guidance_scale: float = 4.5) -> Path:
    """Write the pipeline folder with a scheduler using the training shift, plus ``flashdistill.json`` (its default
    50 steps and ``guidance_scale``, which sampling, ``generate-data`` and the DMD teacher use unless told)."""
    from diffusers import StableDiffusion3Pipeline

    from .nano import MAX_SEQUENCE_LENGTH, RESOLUTION

    out = Path(out)
    scheduler = pipe.scheduler.from_config(pipe.scheduler.config, shift=shift)
    StableDiffusion3Pipeline(**{**pipe.components, "scheduler": scheduler}).save_pretrained(out)  # pipe untouched
    settings = {"kind": "teacher", "num_inference_steps": 50, "guidance_scale": guidance_scale,
                "max_sequence_length": MAX_SEQUENCE_LENGTH, "resolution": RESOLUTION}
    (out / "flashdistill.json").write_text(json.dumps(settings, indent=2) + "\n")
    return out




def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/sd3_nano_teacher.yaml", help="YAML config")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--resume", action="store_true", help="continue both stages from their latest checkpoints")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")


def run(args) -> int:
    from ..config import dump_config, load_config, read_yaml

    if read_yaml(args.config).get("recipe") == "vp_nano_teacher":  # UNet-nano / PixArt-nano (vp_teacher.py)
        from .vp_teacher import run_config

        resume = ["train.resume=true"] if args.resume else []
        return run_config(args.config, list(args.overrides) + resume, dry_run=args.dry_run)
    resume = ["vae.train.resume=true", "dit.train.resume=true"] if args.resume else []
    cfg = load_config(TeacherConfig, args.config, list(args.overrides) + resume)
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    if cfg.stages == ["export"]:
        from .nano import build_nano_pipeline

        pipe, pool = build_nano_pipeline(seed=cfg.seed), None
    else:
        pipe, pool = _pipe_and_pool(cfg)
    if "vae" in cfg.stages:
        train_vae(cfg, pipe, pool)
    if "dit" in cfg.stages:
        train_dit(cfg, pipe, pool)
    if "export" in cfg.stages:
        if not cfg.export_from:
            raise ConfigError("stage export needs export_from=<dit checkpoint folder>")
        print(f"teacher written to {export_checkpoint(cfg, pipe, cfg.export_from)}")
    return 0
