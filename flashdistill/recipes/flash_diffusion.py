"""Flash Diffusion (Chadebec et al., arXiv 2406.02347, Alg. 1): a LoRA student distilled in one procedure.

Run: ``flashdistill distill --config configs/flash_diffusion/<name>.yaml [key=value ...]``. Each iteration:

1. draw (for the global batch, from generators every process shares) a grid index ``j ~ π`` (Eq. 7, the phased
   mixture over the K-point grid), noise, a guidance scale ``ω ~ U[ω_min, ω_max]`` per sample, a discriminator
   level ``t'`` per sample and a DMD time ``t''``;
2. noise the data ``z_0`` to ``z_t`` at ``t = grid[j]`` and solve the teacher's CFG ODE (scale ω) from ``z_t`` down
   the grid to 0 — ``j`` teacher steps (:func:`~flashdistill.losses.k_grid_solution`);
3. :func:`generator_step`: the student's one-step x0 from ``z_t`` against that solution (Eq. 6, MSE or a
   perceptual distance), plus ``λ_adv`` times the LSGAN generator term on the frozen teacher's features of the
   student x0 re-noised to ``t'`` (Eq. 8) and ``λ_DMD`` times the DMD term at the student x0 re-noised to ``t''``
   with the student itself as the fake score (Eq. 9);
4. :func:`disc_step`: the CNN heads on the teacher's features of real ``z_0`` vs the (detached) student x0, both
   re-noised to the same ``t'`` with the same noise; with ``dmd_fake: proxy``, a flow-matching step of the proxy.

The mixture's phase and the λ's advance every ``phase_every`` iterations. The student is a LoRA on the teacher's
own transformer (the teacher = adapters disabled), saved with ``save_lora_weights`` so stock diffusers'
``load_lora_weights`` runs it (:mod:`flashdistill.recipes.flash_diffusion_parts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..flow import interpolate, shift_t, x0_from_v
from ..losses import (
    DiscriminatorAdvLoss,
    DistillationLoss,
    DMDLoss,
    FlowMatchingLoss,
    GeneratorAdvLoss,
    k_grid_solution,
)
from ..models.backbones import KINDS, adapter_for, denoiser_of, is_vp
from ..models.conv_disc import ConvDisc
from ..sampling import CFG
from ..timesteps import FlashMixture, student_grid
from ..training.updates import ModelSlot, frozen
from ..types import Conditioning
from . import common
from .flash_diffusion_config import FlashDiffusionConfig
from .flash_diffusion_parts import build_student, distill_distance, save_lora_student
from .sd35_flash_parts import preview

__all__ = ["FlashDiffusionConfig", "run_recipe", "generator_step", "disc_step", "Parts"]


@dataclass
class Parts:
    """What the loop trains or calls, built once by :func:`setup`."""

    cfg: FlashDiffusionConfig
    run: object  # training.Run
    teacher: object  # the frozen teacher, model(x_t, t, cond) -> v with feature_maps (no CFG)
    adapt: object  # net -> its flow-path adapter (SD3, UNet or PixArt: models.backbones.adapter_for)
    null: Conditioning  # the unconditional conditioning (CFG)
    grid: torch.Tensor  # (K+1,) float64 flow times of the K-point grid, grid[0] = 0 (mixture.grid)
    shift: float  # the grid's shift, also the student's sigmas' (grid_shift_of; 1 for VP teachers)
    student_grid: torch.Tensor  # (num_steps + 1,) decreasing flow times the student samples on
    mixture: FlashMixture  # π(t) over grid[1:]
    student: ModelSlot
    disc: ModelSlot | None
    proxy: ModelSlot | None
    losses: dict  # distill, g_adv, d_adv, dmd, fm

    @property
    def device(self) -> torch.device:
        return self.run.device


def setup(cfg: FlashDiffusionConfig):
    from ..training.run import Run

    cfg.check_paths()
    pipe, settings = common.load_teacher_pipeline(cfg.teacher, kinds=tuple(KINDS.values()))
    shift = grid_shift_of(cfg, pipe)  # refuses a flow shift for a VP teacher before any work
    data = common.open_dataset(cfg.data, teacher_pipe=pipe, teacher=cfg.teacher)
    run = Run(cfg.train, config=cfg)
    net, teacher, params = build_student(cfg, pipe)
    if cfg.student == "full":
        run.add_frozen("teacher", denoiser_of(pipe))
    student = run.add_model("student", net, cfg.student_optim,
                            parameters=[p for p in net.parameters() if p.requires_grad])
    disc = proxy = None
    if cfg.uses_disc:
        try:
            channels = teacher.feature_channels(cfg.disc_blocks)
        except ValueError as err:
            raise ConfigError(f"disc_blocks = {cfg.disc_blocks}: {err}") from None
        heads = ConvDisc(channels, cfg.disc_hidden, cfg.disc_num_down,
                         generator=torch.Generator().manual_seed(cfg.seed))
        disc = run.add_model("disc", heads, cfg.disc_optim)
    if cfg.uses_dmd and cfg.dmd_fake == "proxy":
        proxy = run.add_model("proxy", common.copy_transformer(denoiser_of(pipe)), cfg.proxy_optim)
    var = cfg.timestep_var if cfg.timestep_dist == "mixture" else float("inf")  # infinite variance: uniform
    if is_vp(pipe):  # the modes are fractions of the DDPM index range; the student runs the trailing timesteps
        vp = adapter_for(pipe)
        mixture = FlashMixture(cfg.K, cfg.mode_weights, var=var, to_flow=vp.flow_time_of_fraction)
        grid = vp.trailing_grid(cfg.num_steps)
    else:
        mixture = FlashMixture(cfg.K, cfg.mode_weights, var=var, to_flow=lambda f: shift_t(f, shift))  # shift(j/K)
        grid = student_grid(cfg.num_steps, shift=shift)
    losses = {"distill": DistillationLoss(distill_distance(cfg, pipe, run.device)), "dmd": DMDLoss(),
              "g_adv": GeneratorAdvLoss(cfg.adv_loss), "d_adv": DiscriminatorAdvLoss(cfg.adv_loss),
              "fm": FlowMatchingLoss(None)}
    parts = Parts(cfg, run, teacher, lambda module: adapter_for(pipe, module), data.null_cond().to(run.device),
                  mixture.grid, shift, grid, mixture, student, disc, proxy, losses)
    if run.is_main:
        print(f"student: {cfg.student}, {params['trainable']:,} trainable of {params['total']:,} teacher "
              f"parameters ({100 * params['trainable'] / params['total']:.1f}%)")
    return parts, pipe, settings, data, params


def grid_shift_of(cfg: FlashDiffusionConfig, pipe) -> float:
    """The shift of the K-point grid and of the student's sigmas (``grid_shift``, null: the teacher scheduler's).
    A VP teacher's grid is its own DDPM index range: ``grid_shift`` must stay 1 or null there."""
    if is_vp(pipe):
        if cfg.grid_shift not in (None, 1.0):
            raise ConfigError(f"grid_shift = {cfg.grid_shift}: a shift applies to flow-time grids; {cfg.teacher} is "
                              "a variance-preserving teacher whose grid is fractions of its DDPM index range (use "
                              "null)")
        return 1.0
    return float(cfg.grid_shift if cfg.grid_shift is not None else pipe.scheduler.config.get("shift", 1.0))


def phase_of(cfg: FlashDiffusionConfig, it: int) -> int:
    """The training phase of iteration ``it`` (1-based): one every ``phase_every`` iterations, the last holds."""
    return min((it - 1) // cfg.phase_every, len(cfg.mode_weights) - 1)


def draw_iteration(parts: Parts, d, batch: dict) -> dict:
    """This process's share of the iteration's draws; the same draws every iteration whatever the phase, so the
    shared sequence never forks across processes or resumes."""
    cfg, dev = parts.cfg, parts.device
    x0 = batch["latents"].to(dev)
    b, shape = x0.shape[0], tuple(x0.shape[1:])
    j = parts.mixture.index_from_uniform(d.rand(b))
    lo, hi = cfg.guidance_range
    out = {"latents": x0, "cond": batch["cond"].to(dev), "j": j, "t": parts.grid[j].float().to(dev),
           "noise": d.randn((b, *shape)).to(dev), "omega": (lo + (hi - lo) * d.rand(b)).to(dev)}
    levels = torch.tensor(cfg.disc_t_levels, dtype=torch.float32)
    out["t_disc"] = levels[d.randint(len(levels), b).cpu()].to(dev)
    out["disc_noise"] = d.randn((b, *shape)).to(dev)
    lo, hi = cfg.dmd_t_range
    out["t_dmd"], out["dmd_noise"] = (lo + (hi - lo) * d.rand(b)).to(dev), d.randn((b, *shape)).to(dev)
    out["fm_t"], out["fm_noise"] = d.rand(b).to(dev), d.randn((b, *shape)).to(dev)
    return out


def generator_step(parts: Parts, mb: dict, lam_adv: float, lam_dmd: float, fakes: list) -> dict:
    """The student's terms on one micro-batch (Eq. 6 + λ_adv Eq. 8 + λ_DMD Eq. 9); appends its detached x0."""
    cfg, cond, x_t, t = parts.cfg, mb["cond"], mb["x_t"], mb["t"]
    x0_s = x0_from_v(x_t, parts.adapt(parts.student.model)(x_t, t, cond), t)  # the student's one step
    fakes.append(x0_s.detach())
    out = parts.losses["distill"](x0_s, mb["target"])
    parts.run.log(**out.logs)
    terms = {"distill": out.loss.mean()}
    if lam_adv > 0:
        with frozen(parts.disc.module):  # the heads are a fixed function inside the student's update
            x = interpolate(x0_s, mb["disc_noise"], mb["t_disc"])  # keeps the graph into the student's x0
            feats = parts.teacher.feature_maps(x, mb["t_disc"], cond, cfg.disc_blocks)
            terms["adv"] = lam_adv * parts.losses["g_adv"](parts.disc.module(feats)).loss.mean()
    if lam_dmd > 0:
        fake = parts.adapt(parts.proxy.module if parts.proxy is not None else parts.student.module)
        x_dmd = interpolate(x0_s.detach(), mb["dmd_noise"], mb["t_dmd"])  # stop-gradient: a point to score
        real = CFG(parts.teacher, parts.null, mb["omega"])
        out = parts.losses["dmd"](real, fake, x0_s, x_dmd, mb["t_dmd"], cond)
        parts.run.log(**out.logs)
        terms["dmd"] = lam_dmd * out.loss.mean()
    return terms


def disc_step(parts: Parts, mb: dict) -> dict:
    """The heads on the frozen teacher's features of real data vs student samples at the same ``t'`` and noise."""
    cfg, b = parts.cfg, mb["latents"].shape[0]
    with torch.no_grad():  # real and fake through the teacher in one call, then the heads in one forward (DDP)
        x0 = torch.cat([mb["latents"], mb["fake"]])
        t, noise = mb["t_disc"].repeat(2), mb["disc_noise"].repeat(2, 1, 1, 1)
        feats = parts.teacher.feature_maps(interpolate(x0, noise, t), t, Conditioning.cat([mb["cond"]] * 2),
                                           cfg.disc_blocks)
    logits = parts.disc.model(feats)
    out = parts.losses["d_adv"]([lg[:b] for lg in logits], [lg[b:] for lg in logits])
    parts.run.log(**{k: v for k, v in out.logs.items() if "/head" not in k})
    return {"disc": out.loss.mean()}


def proxy_step(parts: Parts, mb: dict) -> dict:
    out = parts.losses["fm"](parts.adapt(parts.proxy.model), mb["fake"], mb["cond"], noise=mb["fm_noise"],
                             t=mb["fm_t"])
    parts.run.log(**out.logs)
    return {"fm": out.loss.mean()}


def run_recipe(cfg: FlashDiffusionConfig) -> None:
    parts, pipe, settings, data, params = setup(cfg)
    run = parts.run
    d = run.draws("draws", cfg.seed)
    stream = run.data_stream("data", data, batch_size=cfg.batch_size)
    preview(run, pipe, data, parts.adapt(parts.student.module), parts.student_grid, cfg.sampler)
    for it in run.steps():
        phase = phase_of(cfg, it)
        if phase != parts.mixture.phase:
            parts.mixture.set_phase(phase)
        lam_adv, lam_dmd = cfg.adv_weights[phase], cfg.dmd_weights[phase]
        mb = draw_iteration(parts, d, next(stream))
        mb["x_t"] = interpolate(mb["latents"], mb["noise"], mb["t"])
        # the target: the teacher's CFG ODE from z_t down the grid, max(j) batched teacher calls
        mb["target"] = k_grid_solution(CFG(parts.teacher, parts.null, mb["omega"]), mb["x_t"], mb["j"], parts.grid,
                                       mb["cond"])
        fakes: list[torch.Tensor] = []
        run.update_accumulated("student", lambda m, a=lam_adv, w=lam_dmd, f=fakes: generator_step(parts, m, a, w, f),
                               mb)
        mb["fake"] = torch.cat(fakes)
        if parts.disc is not None:
            run.update_accumulated("disc", lambda m: disc_step(parts, m), mb)
        if parts.proxy is not None:
            run.update_accumulated("proxy", lambda m: proxy_step(parts, m), mb)
        run.log(phase=phase, lam_adv=lam_adv, lam_dmd=lam_dmd, t_mean=mb["t"].mean(),
                teacher_steps=float(mb["j"].max()))
    if run.is_main:
        out = save_lora_student(pipe, parts.student.module, cfg, settings, data.meta, params, parts.shift,
                                parts.student_grid)
        print(f"student written to {out}")
