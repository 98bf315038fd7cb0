"""Pieces of the Flash Diffusion recipe (:mod:`flashdistill.recipes.flash_diffusion`): the LoRA (or full) student
and its frozen teacher, the distillation distance, and the folder people run with stock diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.backbones import adapter_for, denoiser_of, kind_of
from ..models.lora import (
    SD3_TARGETS,
    UNET_TARGETS,
    AdaptersOff,
    add_lora,
    count_parameters,
    lora_metadata,
    lora_state_dict,
)
from ..sampling import sigmas_for_pipeline
from . import common

__all__ = ["build_student", "distill_distance", "save_lora_student", "LORA_WEIGHTS"]

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # the name diffusers' save/load_lora_weights use


def build_student(cfg, pipe):
    """``(student_net, teacher, params)``: the trained module, the frozen teacher as an adapter
    (``teacher(x_t, t, cond) -> v`` with ``feature_maps``), and ``{"trainable", "total"}`` parameter counts.

    ``student: lora`` puts peft adapters on the teacher's own denoiser (SD3 or PixArt transformer, UNet); the
    teacher is that module with its adapters disabled, so the base weights exist once. Default targets: every
    attention projection (SD3: joint and dual ``attn2`` ones; UNet / PixArt: self- and cross-attention).
    ``student: full`` trains a copy of every weight.
    """
    base = denoiser_of(pipe).requires_grad_(False).eval()
    if cfg.student == "lora":
        targets = cfg.lora_targets or list(SD3_TARGETS if kind_of(pipe) == "sd3" else UNET_TARGETS)
        try:
            net = add_lora(base, rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=targets)
        except ValueError as err:
            raise ConfigError(f"lora_targets = {targets}: {err}") from None
        teacher = AdaptersOff(adapter_for(pipe, net), net)
    else:
        net = common.copy_transformer(base)
        teacher = adapter_for(pipe, base)
    total = count_parameters(base if cfg.student == "full" else net, trainable_only=False)
    if cfg.student == "lora":
        total -= count_parameters(net)  # the base's own size, without the adapters
    return net.train(), teacher, {"trainable": count_parameters(net), "total": total}


def distill_distance(cfg, pipe, device):
    """The distance of Eq. 6: ``None`` (latent MSE), the FD feature network on decoded images (``perceptual``), or
    LPIPS from local weights (``lpips``)."""
    if cfg.distill_loss == "mse":
        return None
    from ..losses import DecodedDistance, feature_compare
    from ..models.vae import LatentCodec

    vae = pipe.vae.requires_grad_(False).eval().to(device)
    codec = LatentCodec(vae)
    if cfg.distill_loss == "perceptual":
        from ..eval.fd import FEAT_SIZE, load_feature_net

        net = load_feature_net().requires_grad_(False).to(device)
        return DecodedDistance(codec.decode_with_grad, feature_compare(net.features, FEAT_SIZE))
    try:
        import lpips
    except ImportError:
        raise ConfigError("distill_loss: lpips needs the lpips package: pip install 'flashdistill[lpips]'") from None
    net = lpips.LPIPS(net=cfg.lpips_net, pretrained=False, pnet_rand=True, verbose=False)
    try:
        net.load_state_dict(torch.load(cfg.lpips_weights, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, KeyError) as err:
        raise ConfigError(f"lpips_weights {cfg.lpips_weights}: not a state dict of lpips.LPIPS(net="
                          f"'{cfg.lpips_net}') ({str(err).splitlines()[0]})") from None
    net = net.requires_grad_(False).eval().to(device)
    return DecodedDistance(codec.decode_with_grad, lambda a, b: net(a, b).flatten())


def _run_settings(cfg, settings: dict, data_meta: dict, shift: float, pipe, grid) -> dict:
    """What runs the student: SD3 -> its sigmas on a shift-1 flow-match scheduler (diffusers' re-noising Euler for
    the stochastic sampler); UNet / PixArt -> the trailing timestep indices on ``LCMScheduler`` (re-noises each x0
    with fresh noise: the stochastic sampler) or ``DDIMScheduler`` (deterministic), ``flow_grid`` for our sampler."""
    grid = [float(t) for t in grid]
    info = {"guidance_scale": 1.0, "num_inference_steps": cfg.num_steps, "recipe": "flash_diffusion",
            "sampler": cfg.sampler, "flow_grid": grid}
    if kind_of(pipe) == "sd3":
        info.update(sigmas=sigmas_for_pipeline(grid), grid_shift=shift,
                    scheduler={"shift": 1.0, "stochastic_sampling": cfg.sampler == "stochastic"})
    else:
        flow_times = adapter_for(pipe).flow_times()
        index = [int(torch.argmin((flow_times - t).abs())) for t in grid[:-1]]
        info.update(timesteps=index, scheduler_class="LCMScheduler" if cfg.sampler == "stochastic" else "DDIMScheduler",
                    scheduler={"timestep_spacing": "trailing"} if cfg.sampler == "deterministic" else
                    _lcm_settings(index, pipe.scheduler.config.num_train_timesteps))
    for key in ("max_sequence_length", "resolution"):
        value = data_meta.get(key) or settings.get(key)
        if value:
            info[key] = value
    return info


def _lcm_settings(index: list[int], num_train: int) -> dict:
    """``LCMScheduler`` warns about custom timesteps outside its "original" schedule (``original_inference_steps``
    evenly spaced indices, 50 by default: 19, 39, ..., 999, which lacks 749 and 249). When the student's indices are
    that schedule for its own step count, say so, and stock diffusers runs it without the warning."""
    n = len(index)
    return {"original_inference_steps": n} if set(index) <= {k * (num_train // n) - 1 for k in range(1, n + 1)} else {}


def save_lora_student(pipe, net, cfg, settings: dict, data_meta: dict, params: dict, shift: float = 1.0,
                      grid=None) -> Path:
    """Write the student people run: a LoRA folder (``save_lora_weights`` with its adapter metadata, so stock
    ``pipe.load_lora_weights(out)`` restores the trained scale) or, for ``student: full``, a pipeline folder.
    ``flashdistill.json`` records the sigmas, guidance 1, the T5 length, the base teacher, the sampler and the
    scheduler settings (``shift`` 1: the sigmas are used unchanged; ``stochastic_sampling``: diffusers' re-noising
    Euler), which ``flashdistill sample``/``eval`` apply."""
    from ..timesteps import student_grid

    grid = student_grid(cfg.num_steps, shift=shift) if grid is None else grid
    info = {**_run_settings(cfg, settings, data_meta, shift, pipe, grid.tolist()), "parameters": params}
    out = Path(cfg.out)
    kind = kind_of(pipe)
    if cfg.student == "full":
        if kind != "sd3":
            raise ConfigError(f"student: full writes an SD3 pipeline folder; for the {type(pipe).__name__} teacher "
                              "use student: lora")
        common.save_student(pipe, net.eval(), out, grid.tolist(), info, scheduler=info["scheduler"])
        return out
    out.mkdir(parents=True, exist_ok=True)
    _save_lora_layers(pipe, net, out)
    from ..pipelines.folders import recorded_base, student_scheduler

    info.update(kind="lora", base=recorded_base(cfg.teacher), backbone=kind)
    (out / "flashdistill.json").write_text(json.dumps(info, indent=2) + "\n")
    from ..pipelines.model_card import write_model_card
    from ..pipelines.stock import rebuild

    # the sample: the in-memory pipeline (its denoiser carries the trained adapters) with the student's scheduler
    student_pipe = rebuild(pipe, scheduler=student_scheduler(pipe.scheduler, info))
    student_pipe.set_progress_bar_config(disable=True)
    write_model_card(out, pipe=student_pipe)
    return out


def _save_lora_layers(pipe, net, out: Path) -> None:
    """The adapter in the format its family's stock loader reads: ``save_lora_weights`` of the SD3 / SD pipeline
    (with the adapter metadata, so ``load_lora_weights`` restores the scale), or peft's own adapter folder for
    PixArt-α, which has no LoRA loader in diffusers (``PeftModel.from_pretrained(pipe.transformer, folder)``)."""
    layers = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in lora_state_dict(net).items()}
    kind = kind_of(pipe)
    if kind == "sd3":
        from diffusers import StableDiffusion3Pipeline

        StableDiffusion3Pipeline.save_lora_weights(out, transformer_lora_layers=layers, weight_name=LORA_WEIGHTS,
                                                   transformer_lora_adapter_metadata=lora_metadata(net))
    elif kind in ("unet", "sdxl"):
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        cls = StableDiffusionPipeline if kind == "unet" else StableDiffusionXLPipeline
        cls.save_lora_weights(out, unet_lora_layers=layers, weight_name=LORA_WEIGHTS,
                              unet_lora_adapter_metadata=lora_metadata(net))
    else:
        from safetensors.torch import save_file

        net.peft_config["default"].save_pretrained(str(out))  # adapter_config.json
        save_file({f"base_model.model.{k}": v for k, v in layers.items()}, str(out / "adapter_model.safetensors"))
