"""Train a variance-preserving teacher of the Shapes world: ``flashdistill train-teacher --config
configs/unet_nano_teacher.yaml`` (or ``pixart_nano_teacher.yaml``).

The denoiser of a :mod:`~flashdistill.shapes.vp_nano` pipeline learns as its genuine counterpart did: DDPM
training on the model's own discrete schedule (timestep index uniform over 0..999, ``x = sqrt(ᾱ)·x0 +
sqrt(1-ᾱ)·ε``), epsilon prediction (or ``prediction_type: v_prediction``, v = sqrt(ᾱ)·ε − sqrt(1-ᾱ)·x0, which
the stock pipelines run through their scheduler's setting), the empty prompt for a ``p_uncond`` fraction
(classifier-free guidance).
Losses are weighted by min-SNR-γ (Hang et al. 2023, ``snr_gamma``; 0 turns it off), which the diffusers text-to-image
trainer also offers and which converges several times faster at this size; ``snr_floor`` (truncated SNR, Salimans & Ho
2022) also raises the weight of the noisiest timesteps, where ε-MSE hardly sees the image (:func:`loss_weight`).
The VAE and text encoder are SD3-nano's, frozen (PixArt's T5 can train along: ``train_text_encoder``,
:mod:`~flashdistill.shapes.vp_denoiser`). An EMA of the denoiser is exported as a stock
``StableDiffusionPipeline`` / ``PixArtAlphaPipeline`` folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError, register_config
from ..models.backbones import denoiser_of
from ..training.configs import OptimConfig, TrainConfig
from .vp_denoiser import PixArtWithText, call_denoiser, t5_tokens
from .vp_nano import BACKBONES

__all__ = ["VPTeacherConfig", "encode_prompts", "loss_weight", "training_target",
           "train", "export", "run_config"]


@register_config("vp_nano_teacher")
@dataclass
class VPTeacherConfig:
    """A UNet-nano or PixArt-nano teacher, trained on Shapes with SD3-nano's frozen VAE and text encoder."""

    backbone: str = field(default="unet", metadata={"choices": list(BACKBONES)})
    out: str | None = None  # the pipeline folder written at the end (default flashdistill/assets/<backbone>-nano)
    sd3_teacher: str | None = None  # the SD3-nano folder whose VAE and text encoder are reused (default: shipped)
    pool_size: int = field(default=60000, metadata={"min": 64})  # rendered training scenes (train split)
    seed: int = 0  # denoiser initialisation and data seed
    stages: list[str] = field(default_factory=lambda: ["train"], metadata={"choices": ["train", "export"]})
    export_from: str | None = None  # stage "export": a checkpoint folder whose EMA is written to `out`
    init_from: str | None = None  # a trained teacher folder of this backbone to continue (fresh optimiser)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/unet_teacher", max_steps=12000))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, warmup_steps=200, schedule="cosine"))
    batch_size: int = field(default=64, metadata={"min": 1})
    snr_gamma: float = field(default=5.0, metadata={"min": 0.0})  # min-SNR-γ loss weight; 0 = plain MSE
    # what the denoiser predicts: ε (the genuine models) or v; written to the exported folder's scheduler
    prediction_type: str = field(default="epsilon", metadata={"choices": ["epsilon", "v_prediction"]})
    # truncated SNR: below this SNR the loss is the x0 error (0 = off; see loss_weight)
    snr_floor: float = field(default=0.0, metadata={"min": 0.0})
    p_uncond: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})  # empty prompt (for CFG)
    # PixArt: train the T5 with the transformer (vp_denoiser.PixArtWithText; exported with it). Off: frozen.
    train_text_encoder: bool = False
    max_sequence_length: int = field(default=16, metadata={"min": 1})  # T5 tokens (PixArt)
    # PixArt-nano's size for a fresh denoiser: transformer blocks and attention heads (32 wide each); init_from
    # continues a folder at its own size, export_from needs the values the run was trained with
    pixart_layers: int = field(default=6, metadata={"min": 1})
    pixart_heads: int = field(default=6, metadata={"min": 1})
    ema_half_life: float = field(default=150.0, metadata={"min": 1.0})  # EMA half-life in steps (exported)
    guidance_scale: float = field(default=4.0, metadata={"min": 1.0})  # CFG of the sample grids; exported default
    # dtype of the exported denoiser weights: float16 halves the shipped bytes; stock from_pretrained still loads
    # them as float32 unless told otherwise
    export_dtype: str = field(default="float32", metadata={"choices": ["float32", "float16", "bfloat16"]})
    sample_steps: int = field(default=25, metadata={"min": 1})  # steps of the periodic sample grids
    sample_prompts: list[str] = field(default_factory=lambda: [
        "a red circle", "two blue squares", "a green triangle above a yellow cross",
        "a purple square to the left of a cyan circle"])

    def validate(self) -> None:
        if self.train_text_encoder and self.backbone != "pixart":
            raise ConfigError(f"train_text_encoder = true is for backbone pixart (its T5), not {self.backbone}: "
                              "UNet-nano's CLIP tokens already carry their attributes")
        sized = [k for k, v in (("pixart_layers", self.pixart_layers), ("pixart_heads", self.pixart_heads))
                 if v != getattr(VPTeacherConfig, k)]
        if sized and self.backbone != "pixart":
            raise ConfigError(f"{', '.join(sized)} set the size of PixArt-nano's transformer, not of {self.backbone}-"
                              "nano's denoiser (leave them at their defaults)")
        if self.snr_floor > 0 and (self.snr_gamma <= 0 or self.snr_floor > self.snr_gamma):
            raise ConfigError(f"snr_floor = {self.snr_floor} needs min-SNR on with snr_floor <= snr_gamma "
                              f"(snr_gamma = {self.snr_gamma})")

    def out_dir(self) -> Path:
        from ..assets_paths import ASSETS

        return Path(self.out) if self.out else ASSETS / f"{self.backbone}-nano"


def loss_weight(snr: torch.Tensor, gamma: float, floor: float = 0.0, prediction_type: str = "epsilon"):
    """Weight of each sample's MSE on its target (ε or v) so that the loss is ``clamp(SNR, floor, γ)`` times its
    x0-MSE.

    An ε error e is an x0 error e / √SNR, so ε-MSE · w equals x0-MSE · SNR · w; a v error e is an x0 error
    e · √(1-ᾱ), so v-MSE · w equals x0-MSE · (SNR + 1) · w. min-SNR-γ caps the x0 weight at γ (``floor = 0``: for ε,
    w = min(SNR, γ) / SNR). With ``floor > 0`` the x0 weight never drops below ``floor``: at SNR far below 1 (most of
    PixArt-α's linear schedule above index ~700) plain ε-MSE scales the image's share of the loss by SNR.
    ``gamma = 0`` turns min-SNR off (and with it the floor): plain MSE on the target. ``floor <= gamma`` is
    ``VPTeacherConfig``'s check (above γ, torch's clamp would give γ everywhere).
    """
    if gamma <= 0:
        return torch.ones_like(snr)
    x0_weight = snr.clamp(min=floor, max=gamma)
    return x0_weight / (snr + 1 if prediction_type == "v_prediction" else snr)


def training_target(x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """What the denoiser learns to output at ``x = √ᾱ·x0 + √(1-ᾱ)·ε`` (``a`` = ᾱ, broadcastable): ε, or
    v = √ᾱ·ε − √(1-ᾱ)·x0 (the velocity diffusers' schedulers read for ``v_prediction``)."""
    if prediction_type == "v_prediction":
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    return noise


def encode_prompts(pipe, prompts: list[str], max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(embeddings, attention mask or None)`` exactly as the stock pipeline's ``encode_prompt`` computes them."""
    device = pipe.text_encoder.device
    if hasattr(pipe, "unet"):
        embeds, _ = pipe.encode_prompt(prompts, device, 1, False)
        return embeds, None
    embeds, mask, _, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=device,
                                            max_sequence_length=max_sequence_length)
    return embeds, mask


def _build(cfg: VPTeacherConfig):
    from .vp_nano import build_vp_nano_pipeline

    size = (cfg.pixart_layers, cfg.pixart_heads)
    if cfg.init_from:
        if not (Path(cfg.init_from) / "model_index.json").is_file():
            raise ConfigError(f"init_from={cfg.init_from}: no pipeline folder there (model_index.json); give a "
                              f"{cfg.backbone}-nano teacher written by train-teacher or its stage export")
        if cfg.backbone == "pixart":
            size = _folder_pixart_size(cfg, size)
    pipe = build_vp_nano_pipeline(cfg.backbone, seed=cfg.seed, sd3_teacher=cfg.sd3_teacher,
                                  prediction_type=cfg.prediction_type, pixart_size=size)
    if cfg.init_from:
        from diffusers import DiffusionPipeline

        src = DiffusionPipeline.from_pretrained(cfg.init_from)
        try:  # the folder's text encoder too: the one its denoiser was trained with (trained or SD3-nano's)
            denoiser_of(pipe).load_state_dict(denoiser_of(src).state_dict())
            pipe.text_encoder.load_state_dict(src.text_encoder.state_dict())
        except RuntimeError as err:
            raise ConfigError(f"init_from={cfg.init_from}: not a {cfg.backbone}-nano teacher ({err})") from None
    return pipe


def _folder_pixart_size(cfg: VPTeacherConfig, asked: tuple[int, int]) -> tuple[int, int]:
    """The (blocks, heads) of the PixArt folder ``init_from`` continues; set sizes must agree with it."""
    path = Path(cfg.init_from) / "transformer" / "config.json"
    try:
        tc = json.loads(path.read_text())
        size = (int(tc["num_layers"]), int(tc["num_attention_heads"]))
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"init_from={cfg.init_from}: cannot read the transformer's size from {path} "
                          f"({err})") from None
    default = (VPTeacherConfig.pixart_layers, VPTeacherConfig.pixart_heads)
    if asked != default and asked != size:
        raise ConfigError(f"pixart_layers = {asked[0]}, pixart_heads = {asked[1]} disagree with init_from="
                          f"{cfg.init_from} ({size[0]} blocks, {size[1]} heads); leave them out to continue it")
    return size


def train(cfg: VPTeacherConfig) -> Path | None:
    """Train the denoiser; returns the exported folder (main process)."""
    from ..models.vae import LatentCodec
    from ..training.run import Run
    from .data import ShapesPool

    pipe = _build(cfg)
    pool = ShapesPool(cfg.pool_size, seed=cfg.seed, split="train")
    run = Run(cfg.train, config=cfg)
    codec = LatentCodec(run.add_frozen("vae", pipe.vae))
    if cfg.train_text_encoder:
        slot = run.add_model("denoiser", PixArtWithText(denoiser_of(pipe), pipe.text_encoder), cfg.optim)
    else:
        run.add_frozen("text_encoder", pipe.text_encoder)
        slot = run.add_model("denoiser", denoiser_of(pipe), cfg.optim)
    ema = run.add_ema("denoiser_ema", of="denoiser", half_life=cfg.ema_half_life, warmup=True)
    data = run.data_stream("pairs", pool, batch_size=cfg.batch_size)
    gen = run.generator("noise")
    acp = torch.as_tensor(pipe.scheduler.alphas_cumprod, dtype=torch.float32, device=run.device)

    def samples(step: int):
        with ema.swapped_into(slot.module):
            slot.module.eval()
            prompts = [p for p in cfg.sample_prompts for _ in range(4)]
            images = sample_stock(pipe, prompts, cfg.sample_steps, cfg.guidance_scale, cfg.max_sequence_length)
            slot.module.train()
        return images

    run.on_samples(samples)
    for _ in run.steps():
        batch = next(data)
        x0 = codec.encode(batch["image"].to(run.device))
        n = x0.shape[0]
        on = gen.device
        idx = torch.randint(0, len(acp), (n,), generator=gen, device=on).to(run.device)
        noise = torch.randn(x0.shape, generator=gen, device=on).to(run.device)
        uncond = (torch.rand(n, generator=gen, device=on) < cfg.p_uncond).tolist()
        prompts = ["" if u else p for p, u in zip(batch["prompt"], uncond)]
        a = acp[idx].view(-1, 1, 1, 1)
        x = a.sqrt() * x0 + (1 - a).sqrt() * noise
        if cfg.train_text_encoder:  # the T5 runs inside the trained module (timesteps in fp32, as diffusers)
            pred = slot.model(x, idx.float(), *t5_tokens(pipe, prompts, cfg.max_sequence_length, run.device))
        else:
            embeds, mask = encode_prompts(pipe, prompts, cfg.max_sequence_length)
            pred = call_denoiser(slot.model, x, idx.float(), embeds, mask)
        target = training_target(x0, noise, a, cfg.prediction_type)
        per_sample = (pred.float() - target).pow(2).mean(dim=(1, 2, 3))
        snr = a.flatten() / (1 - a.flatten())
        per_sample = per_sample * loss_weight(snr, cfg.snr_gamma, cfg.snr_floor, cfg.prediction_type)
        run.update("denoiser", {"v" if cfg.prediction_type == "v_prediction" else "eps": per_sample.mean()})
    if not run.is_main:
        return None
    with ema.swapped_into(slot.module):
        return export(pipe, cfg)


@torch.no_grad()
def sample_stock(pipe, prompts, steps: int, guidance: float, max_sequence_length: int, seed: int = 0):
    """Images ``(N, 3, H, W)`` in [0, 1] from the stock pipeline call (its own scheduler), fixed noise."""
    from ..pipelines.stock import family_of, stock_call_kwargs

    kwargs = stock_call_kwargs({"max_sequence_length": max_sequence_length}, family_of(pipe), steps=steps,
                               guidance=guidance)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return pipe(prompt=list(prompts), generator=generator, output_type="pt", **kwargs).images


def export(pipe, cfg: VPTeacherConfig) -> Path:
    """Write the pipeline folder and its ``flashdistill.json`` (50 steps, the CFG scale, T5 length)."""
    import copy

    from ..pipelines.stock import rebuild

    out = cfg.out_dir()
    net = denoiser_of(pipe)
    if cfg.export_dtype != "float32":  # a cast copy: the training model is untouched
        net = copy.deepcopy(net).to(getattr(torch, cfg.export_dtype))
    name = "unet" if hasattr(pipe, "unet") else "transformer"
    exported = rebuild(pipe, **{name: net})  # keeps requires_safety_checker: false from build_vp_nano_pipeline
    exported.save_pretrained(out)
    settings = {"kind": "teacher", "backbone": cfg.backbone, "num_inference_steps": 50,
                "guidance_scale": cfg.guidance_scale, "max_sequence_length": cfg.max_sequence_length,
                "resolution": pipe.vae.config.sample_size}
    (out / "flashdistill.json").write_text(json.dumps(settings, indent=2) + "\n")
    return out


def export_checkpoint(cfg: VPTeacherConfig) -> Path:
    """Write the teacher from a checkpoint's EMA (to inspect or ship a run that was cut short)."""
    from safetensors.torch import load_file

    if not cfg.export_from:
        raise ConfigError("stage export needs export_from=<checkpoint folder>")
    ema_file = Path(cfg.export_from) / "ema" / "denoiser_ema.safetensors"
    if not ema_file.is_file():
        raise FileNotFoundError(f"export_from: no EMA weights at {ema_file}")
    pipe = _build(cfg)
    net = PixArtWithText(denoiser_of(pipe), pipe.text_encoder) if cfg.train_text_encoder else denoiser_of(pipe)
    buffers = {name for name, _ in net.named_buffers()}  # the EMA also holds non-persistent buffers (PixArt's
    state = {k: v for k, v in load_file(str(ema_file)).items() if k not in buffers or k in net.state_dict()}
    own = net.state_dict()  # safetensors keeps one name of tied weights (T5's shared / embed_tokens): fill the other
    for key in own.keys() - state.keys():
        alias = next((k for k in state if k in own and own[k].data_ptr() == own[key].data_ptr()), None)
        if alias is not None:
            state[key] = state[alias]
    try:  # positional table): those are rebuilt from the config, everything else must match
        net.load_state_dict(state)
    except RuntimeError as err:
        hint = (f"; trained with other sizes? give its pixart_layers / pixart_heads (now {cfg.pixart_layers} / "
                f"{cfg.pixart_heads})" if cfg.backbone == "pixart" else "")
        raise ConfigError(f"{ema_file}: not a {cfg.backbone}-nano denoiser{hint} ({str(err)[:300]})") from None
    return export(pipe, cfg)


def run_config(path: str, overrides: list[str], dry_run: bool = False) -> int:
    from ..config import dump_config, load_config

    cfg = load_config(VPTeacherConfig, path, overrides)
    if dry_run:
        print(dump_config(cfg))
        return 0
    if "train" in cfg.stages:
        out = train(cfg)
        if out is not None:
            print(f"teacher written to {out}")
    if "export" in cfg.stages:
        print(f"teacher written to {export_checkpoint(cfg)}")
    return 0

