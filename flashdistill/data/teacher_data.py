"""The work behind ``generate-data``: load the teacher, resolve its settings, produce shards (teacher samples
with optional trajectories, or encoded image–caption pairs). See :mod:`flashdistill.data.generate`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from .. import seeds
from ..config import ConfigError
from ..pipelines.folders import guidance_of
from .batch import collate
from .cache import check_settings, write_sharded
from .errors import DataError
from .generate_config import GenerateConfig, settings_of, teacher_grid
from .images import ImageCaptionDataset
from .prompts import read_prompts

__all__ = ["write_dataset", "process_info", "load_teacher", "sample_noise"]


def process_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as set by ``accelerate launch`` / torchrun (``(0, 1, 0)`` alone)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def weights_fingerprint(pipe, per_tensor: int = 4096) -> str:
    """A short hash of the pipeline's weights (every ``torch.nn.Module`` component): names, shapes and up to
    ``per_tensor`` evenly strided values of each tensor, so a resumed write notices a teacher whose weights changed
    behind the same folder name without reading all of a multi-GB model."""
    digest = hashlib.sha256()
    modules = {k: v for k, v in getattr(pipe, "components", {}).items() if isinstance(v, torch.nn.Module)}
    for component, module in sorted(modules.items()):
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // per_tensor)][:per_tensor]
            digest.update(f"{component}.{name}{tuple(tensor.shape)}".encode())
            digest.update(sample.to(device="cpu", dtype=torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


def _device(name: str, local_rank: int) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def load_teacher(model: str, dtype: torch.dtype, kinds: tuple[str, ...] = ("sd3",)):
    """``(pipe, folder_settings)`` for ``"tiny"``, ``"sd3-nano"`` or a pipeline folder of one of ``kinds``
    (``"sd3"``, ``"unet"``, ``"pixart"``; another family is refused naming the folder)."""
    if model == "tiny":
        from ..models.tiny import tiny_sd3_pipeline

        pipe = tiny_sd3_pipeline(seed=0)
        pipe.set_progress_bar_config(disable=True)
        return (pipe if dtype == torch.float32 else pipe.to(dtype=dtype)), {}
    from ..pipelines.folders import load_pipeline, read_run_settings, resolve_model

    folder = resolve_model(model)
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"'model': not a diffusers pipeline folder (no model_index.json): {folder}")
    return load_pipeline(folder, dtype=dtype, kinds=kinds), read_run_settings(folder)


def sample_noise(k: int, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The starting noise of training sample ``k``: a function of ``(seed, k)`` only, disjoint from every
    evaluation noise by construction (:mod:`flashdistill.seeds`)."""
    return seeds.sample_noise("data", seed, k, shape)


def _write_png(path: Path, image: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def write_dataset(cfg: GenerateConfig, pipe=None, progress: bool = True) -> Path | None:
    """Produce the shards of this process, then the index if every shard exists; see ``generate``."""
    from ..models.backbones import KINDS, adapter_for, denoiser_of, is_vp, text_encoder_for
    from ..models.vae import LatentCodec, to_uint8
    from ..sampling import CFG, euler_solve

    rank, world, local_rank = process_info()
    dtype = getattr(torch, cfg.dtype)
    folder_settings = {}
    if pipe is None:
        pipe, folder_settings = load_teacher(cfg.model, dtype, kinds=tuple(KINDS.values()))
    device = _device(cfg.device, local_rank)
    pipe.to(device)
    out = Path(cfg.out)

    # ---- resolve settings (folder defaults) and geometry, validate before any work
    num_steps = cfg.num_steps or folder_settings.get("num_inference_steps", 28)
    guidance = guidance_of(folder_settings, cfg.guidance_scale)
    shift = cfg.shift or float(pipe.scheduler.config.get("shift", 1.0))
    msl = cfg.max_sequence_length or folder_settings.get("max_sequence_length", 77)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    tconf = denoiser_of(pipe).config
    patch = getattr(tconf, "patch_size", None) or 1  # a UNet has no patches
    resolution = cfg.resolution or folder_settings.get("resolution") or tconf.sample_size * factor
    side = resolution // factor
    if resolution % factor or side % patch:
        raise DataError(
            f"resolution {resolution}: latents of side {resolution / factor:g} must be a whole "
            f"multiple of the patch size {patch} (VAE factor {factor})"
        )
    latent_shape = (tconf.in_channels, side, side)
    if cfg.prompts is not None:
        prompts = read_prompts(cfg.prompts)[: cfg.limit]
        pairs, num_samples = None, len(prompts) * cfg.samples_per_prompt
    else:
        pairs = ImageCaptionDataset(cfg.images, resolution=resolution)
        num_samples = min(len(pairs), cfg.limit or len(pairs))
    if is_vp(pipe):  # a DDPM teacher runs its own "trailing" timesteps (as its stock DDIM scheduler would)
        if cfg.trajectory_grid:
            raise DataError("trajectory_grid: stored trajectories are for flow (SD3-family) teachers; "
                            f"{cfg.model} is a variance-preserving {type(pipe).__name__}")
        grid, positions = adapter_for(pipe).trailing_grid(num_steps), []
    else:
        grid, positions = teacher_grid(num_steps, shift, cfg.trajectory_grid)
    resolved = {
        "num_samples": num_samples,
        "num_steps": num_steps,
        "guidance_scale": guidance,
        "shift": shift,
        "max_sequence_length": msl,
        "resolution": resolution,
        "latent_shape": list(latent_shape),
        "teacher_grid": grid.tolist() if pairs is None else None,
        "model_weights": weights_fingerprint(pipe),
        "noise_scheme": seeds.NOISE_SCHEME,
    }
    check_settings(out, settings_of(cfg, resolved))
    codec = LatentCodec(pipe.vae)
    meta = {
        **resolved,
        "kind": "teacher_samples" if pairs is None else "encoded_pairs",
        "model": cfg.model,
        "trajectory_grid": cfg.trajectory_grid,
        "trajectory_positions": positions,
        "seed": cfg.seed,
        "latent_space": "scaled (z - shift_factor) * scaling_factor",
        "scaling_factor": codec.scale,
        "shift_factor": codec.shift,
    }

    text = text_encoder_for(pipe, msl)
    null = text.null(1)
    if not (out / "null.safetensors").is_file():
        tmp = out / f".null.{os.getpid()}.tmp"
        save_file({k: v.detach().float().cpu().contiguous() for k, v in null.state().items()}, str(tmp))
        os.replace(tmp, out / "null.safetensors")
    model = CFG(adapter_for(pipe), null, guidance)
    t_start = float(grid[0])  # unit-variance noise is the flow point noise·sqrt((1-t)² + t²) (1 at t = 1)
    start_scale = ((1 - t_start) ** 2 + t_start**2) ** 0.5
    if cfg.save_images:
        (out / "images").mkdir(exist_ok=True)

    def prompt_of(k: int) -> str:
        return prompts[k // cfg.samples_per_prompt] if pairs is None else pairs.items[k][1]

    @torch.no_grad()
    def produce(start: int, stop: int):
        parts: dict[str, list[torch.Tensor]] = {}
        for a in range(start, stop, cfg.batch_size):
            ks = list(range(a, min(stop, a + cfg.batch_size)))
            texts = [prompt_of(k) for k in ks]
            cond = text.encode(texts)
            if pairs is None:
                noise = torch.stack([sample_noise(k, cfg.seed, latent_shape) for k in ks]).to(device, dtype)
                noise = noise * start_scale
                x0, traj = euler_solve(model, noise, grid, cond, return_trajectory=True)
                fields = {"latents": x0.float(), "noise": noise.float()}
                if positions:
                    fields["trajectory"] = torch.stack([traj[p] for p in positions], dim=1).float()
            else:
                images = collate([pairs[k] for k in ks])["image"]
                fields = {"latents": codec.encode(images.to(device))}
            fields.update({f"cond.{k}": v.float() for k, v in cond.state().items()})
            if cfg.save_images:
                pixels = to_uint8(codec.decode(fields["latents"]))
                for k, im in zip(ks, pixels):
                    _write_png(out / "images" / f"{k:07d}.png", im)
            for name, value in fields.items():
                parts.setdefault(name, []).append(value.cpu())
        return {k: torch.cat(v) for k, v in parts.items()}, [prompt_of(k) for k in range(start, stop)]

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = lambda shards: tqdm(shards, desc=f"generate-data -> {out}", unit="shard")  # noqa: E731
    write_sharded(out, num_samples, cfg.shard_size, produce, rank, world, meta, progress=bar)
    if not (out / "index.json").is_file():
        return None
    if cfg.save_images:
        lines = [json.dumps({"file": f"{k:07d}.png", "prompt": prompt_of(k)}) for k in range(num_samples)]
        (out / "images" / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
