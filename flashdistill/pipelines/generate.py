"""Batched image generation from a teacher or student pipeline folder, for evaluation and reports.

Sampling goes through our adapter + samplers (bit-compatible with ``StableDiffusion3Pipeline``, see the parity
tests) so that the starting noise of prompt ``k`` depends only on ``(seed, k)``, whatever the batch size.
A teacher at ``N`` Euler steps uses exactly the sigmas diffusers' scheduler would use for
``num_inference_steps=N``; a student uses the sigmas recorded in its ``flashdistill.json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.backbones import KINDS, adapter_for, denoiser_of, is_vp, text_encoder_for
from ..models.vae import LatentCodec, to_uint8
from ..sampling import CFG, euler_solve, renoise_update
from ..seeds import sample_noise
from ..timesteps import student_grid
from .folders import guidance_of, load_pipeline, read_run_settings

__all__ = ["SamplingSetup", "scheduler_sigmas", "generate_images", "load_setup", "eval_noise"]


@dataclass
class SamplingSetup:
    """A loaded pipeline and how to sample it."""

    pipe: object
    timesteps: list[float]  # decreasing, ending at 0
    guidance_scale: float
    max_sequence_length: int
    resolution: int
    sampler: str = "deterministic"  # "stochastic": re-noise each x0 estimate with fresh noise (Flash Diffusion)


def scheduler_sigmas(pipe, num_steps: int) -> list[float]:
    """The sigmas (with the terminal 0) diffusers' scheduler uses for ``num_inference_steps=num_steps``; for a
    variance-preserving pipeline the flow times of its "trailing" timesteps (what our folders' DDIM runs)."""
    if is_vp(pipe):
        return adapter_for(pipe).trailing_grid(num_steps).tolist()
    sched = pipe.scheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(num_steps)
    return [float(s) for s in sched.sigmas]


def load_setup(folder: str | Path, steps: int | None = None, guidance: float | None = None,
               drop_t5: bool = False, pipe=None) -> SamplingSetup:
    """Load a folder (or use ``pipe``) and resolve its sampling settings (overrides win)."""
    settings = read_run_settings(folder) if folder else {}
    pipe = pipe if pipe is not None else load_pipeline(folder, drop_t5=drop_t5, kinds=tuple(KINDS.values()))
    if steps is None and "flow_grid" in settings:  # a student's own grid (any family), ending at 0
        timesteps = [float(t) for t in settings["flow_grid"]]
    elif steps is None and "sigmas" in settings:
        timesteps = list(settings["sigmas"]) + [0.0]
    elif "timesteps" in settings and is_vp(pipe):  # a VP student (at another step count): its trailing grid
        timesteps = scheduler_sigmas(pipe, steps or len(settings["timesteps"]))
    elif "sigmas" in settings:  # a student at another step count: its own (shifted) uniform grid
        timesteps = student_grid(steps, shift=float(settings.get("grid_shift", 1.0))).tolist()
    else:
        timesteps = scheduler_sigmas(pipe, steps or settings.get("num_inference_steps", 28))
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    resolution = settings.get("resolution") or denoiser_of(pipe).config.sample_size * factor
    return SamplingSetup(pipe, timesteps, guidance_of(settings, guidance),
                         settings.get("max_sequence_length", 256), resolution, settings.get("sampler", "deterministic"))


def eval_noise(k: int, seed: int, shape, step: int = 0) -> torch.Tensor:
    """The starting noise (``step`` 0) of evaluation image ``k`` of seed set ``seed``, or the fresh noise of its
    ``step``-th re-noising (stochastic sampler): never the noise of a training sample (:mod:`flashdistill.seeds`)."""
    return sample_noise("eval", seed, k, shape, step=step)


def _renoise_step(setup: SamplingSetup, start: int, seed: int, n: int):
    """``None`` (Euler) or the stochastic sampler's update: x0 estimate re-noised to the next time with the
    evaluation noise of its step, so images depend only on ``(seed, k)`` whatever the batch size."""
    if setup.sampler == "deterministic":
        return None
    if setup.sampler != "stochastic":
        from ..errors import DataError

        raise DataError(f"unknown sampler {setup.sampler!r} in flashdistill.json (deterministic or stochastic)")
    def fresh(j, x):
        return torch.stack([eval_noise(start + k, seed, tuple(x.shape[1:]), j + 1) for k in range(n)])

    return renoise_update(fresh)


@torch.no_grad()
def generate_images(setup: SamplingSetup, prompts: Sequence[str], seed: int = 0, batch_size: int = 32,
                    progress=None, start: int = 0) -> tuple[np.ndarray, float]:
    """Images ``(N, H, W, 3)`` uint8 for ``prompts`` and the mean seconds per image (denoising + decoding).
    ``prompts[j]`` is evaluation image ``start + j`` of seed set ``seed`` (its noise), so a long list can be made in
    pieces with the same result."""
    pipe = setup.pipe
    net = denoiser_of(pipe)
    device = net.device
    text = text_encoder_for(pipe, setup.max_sequence_length)
    codec = LatentCodec(pipe.vae)
    model = CFG(adapter_for(pipe, net), text.null(), setup.guidance_scale)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    shape = (net.config.in_channels, setup.resolution // factor, setup.resolution // factor)
    t_start = float(setup.timesteps[0])  # unit-variance noise is the flow point noise·sqrt((1-t)² + t²) (1 at t = 1)
    start_scale = ((1 - t_start) ** 2 + t_start**2) ** 0.5
    out, seconds = [], 0.0
    starts = range(0, len(prompts), batch_size)
    for s in progress(starts) if progress else starts:
        chunk = list(prompts[s : s + batch_size])
        noise = torch.stack([eval_noise(start + s + j, seed, shape) for j in range(len(chunk))])
        noise = noise.to(device) * start_scale
        t0 = time.perf_counter()
        step = _renoise_step(setup, start + s, seed, len(chunk))
        x0 = euler_solve(model, noise, setup.timesteps, text.encode(chunk), step=step)
        images = to_uint8(codec.decode(x0))
        seconds += time.perf_counter() - t0
        out.append(images)
    return np.concatenate(out), seconds / max(len(prompts), 1)
