"""Pieces both SD3.5-Flash stages build the same way (see :mod:`flashdistill.recipes.sd35_flash`): the teacher and
student, the student's step draws, its registration with an EMA, the preview grid, and the finished folder."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..errors import ConfigError
from ..seeds import sample_noise
from ..timesteps import GridSampler
from . import common

__all__ = ["build", "steps_sampler", "draw_steps", "add_student", "branch_divergence", "finish", "preview"]


def build(cfg):
    """``(pipe, folder_settings, teacher_net, student_net)``: the teacher pipeline and a student copy."""
    pipe, settings = common.load_teacher_pipeline(cfg.teacher)
    teacher_net = pipe.transformer.requires_grad_(False).eval()
    student_net = (common.load_student_transformer(cfg.init_student, teacher_net) if cfg.init_student
                   else common.copy_transformer(teacher_net))
    if cfg.init_student:
        _check_start_sampler(cfg)
    return pipe, settings, teacher_net, student_net


def _check_start_sampler(cfg) -> None:
    """Warn when the start student was trained for another sampler than this stage trains (and writes): a
    Flash Diffusion student run with Euler steps loses ~0.1 ShapesEval on SD3-nano (docs/sd35_flash.md, row 27)."""
    import logging

    from ..pipelines.folders import read_run_settings

    settings = read_run_settings(cfg.init_student)
    recorded = settings.get("sampler", "deterministic") if settings else None
    if recorded is not None and recorded != cfg.sampler:
        logging.getLogger(__name__).warning(
            "init_student %s records sampler %r; this stage trains and writes sampler %r (set sampler: %s to keep "
            "the one it was trained for)", cfg.init_student, recorded, cfg.sampler, recorded)


def steps_sampler(cfg, grid: torch.Tensor, steps=None) -> GridSampler:
    """The student steps a run trains (``step_range``, or the given ``steps``), drawn with ``step_weights``."""
    t_range = tuple(cfg.step_range) if cfg.step_range and steps is None else None
    try:
        return GridSampler(grid, t_range, steps=steps, weights=cfg.step_weights)
    except ValueError as err:
        raise ConfigError(f"step_range {cfg.step_range} / step_weights {cfg.step_weights}: {err}") from None


def draw_steps(cfg, sampler: GridSampler, draws, b: int) -> torch.Tensor:
    """Student step indices ``(b,)`` (CPU long): one shared draw per global batch, or one per sample."""
    allowed = sampler.allowed
    if sampler.weighted:  # weighted steps (step_weights): the inverse CDF of shared uniforms
        u = draws.shared_rand().expand(b) if cfg.steps_per_batch else draws.rand(b)
        return sampler.pick(u.cpu())
    if cfg.steps_per_batch:
        return allowed[draws.shared_randint(len(allowed))].expand(b).clone()
    return allowed[draws.randint(len(allowed), b).cpu()]


def add_student(run, cfg, student_net, updates: int):
    """Register the student (lr schedule sized by its own ``updates``) and its EMA; keep the start weights when
    an EMA is exported, to report how far the export moved (:func:`finish`)."""
    slot = run.add_model("student", student_net, cfg.student_optim, max_updates=updates)
    ema = None
    if cfg.ema_decay:
        ema = run.add_ema("student_ema", of="student", decay=cfg.ema_decay, warmup=cfg.ema_warmup)
        ema.start = {k: v.detach().to("cpu", copy=True) for k, v in slot.module.state_dict().items()}
    return slot, ema


def branch_divergence(start: dict, live: dict, export: dict) -> dict:
    """``export_vs_live = ‖w_export − w_start‖ / ‖w_live − w_start‖`` (1: the EMA moved as far as the weights; ≈0:
    the export is still the start) and ``live_moved = ‖w_live − w_start‖ / ‖w_start‖``."""
    def dist(a, b):
        return sum(float((a[k].double().cpu() - b[k].double().cpu()).pow(2).sum()) for k in a) ** 0.5
    norm = sum(float(v.double().pow(2).sum()) for v in start.values()) ** 0.5
    live_d = dist(live, start)
    return {"export_vs_live": dist(export, start) / live_d if live_d > 0 else 0.0,
            "live_moved": live_d / norm if norm > 0 else 0.0}


def finish(run, cfg, pipe, student_net, grid, settings, data, ema=None) -> None:
    """Write the student folder (the EMA's weights when one is kept), on the main process."""
    if not run.is_main:
        return
    net = copy.deepcopy(student_net)
    teacher = cfg.teacher if cfg.teacher in ("sd3-nano", "tiny") else str(Path(cfg.teacher).resolve())
    extra = {"recipe": "sd35_flash", "stage": cfg.stage, "teacher": teacher, "sampler": cfg.sampler}
    if cfg.grid_shift != 1.0:  # other step counts of this student use the same shift (pipelines.generate)
        extra["grid_shift"] = cfg.grid_shift
    if ema is not None:
        ema.copy_to(net)
        extra["branch_divergence"] = branch_divergence(ema.start, student_net.state_dict(), net.state_dict())
        extra["student_updates"] = ema.num_updates
    # the T5 length and resolution the student was trained with (the data's, else the teacher folder's)
    for key in ("max_sequence_length", "resolution"):
        value = data.meta.get(key) or settings.get(key)
        if value:
            extra[key] = value
    # stock diffusers runs the stochastic sampler as its flow-match Euler scheduler's re-noising option
    scheduler = {"stochastic_sampling": True} if cfg.sampler == "stochastic" else None
    common.save_student(pipe, net.eval(), cfg.out, grid.tolist(), extra, scheduler=scheduler)
    print(f"student written to {cfg.out}" + (f" (EMA; divergence {extra['branch_divergence']})" if ema else ""))


def preview(run, pipe, data, student, grid, mode: str = "deterministic") -> None:
    """Register a callback drawing the student's samples for 8 fixed dataset prompts (``log.samples_every``), with
    the student's sampler (``mode`` of :func:`~flashdistill.sampling.student_sample`; re-noising from a fixed
    preview generator)."""
    from ..data.batch import collate
    from ..models.vae import LatentCodec
    from ..sampling import student_sample

    items = [data[i] for i in range(min(8, len(data)))]
    if not items:
        return
    cond = collate([it["cond"] for it in items])
    codec = LatentCodec(pipe.vae.to(run.device))

    def draw(step: int):
        shape = items[0]["latents"].shape
        noise = torch.stack([sample_noise("preview", 0, k, shape) for k in range(len(items))]).to(run.device)
        gen = torch.Generator(device=run.device).manual_seed(0)
        with torch.no_grad():
            x0 = student_sample(student, noise, grid.to(run.device), cond.to(run.device), mode=mode, generator=gen)
        return (codec.decode(x0) + 1) / 2

    run.on_samples(draw)
