"""SD3.5-Flash stage 2: distribution matching with timestep sharing + the multi-head adversarial objective.

Each iteration draws (for the global batch, from generators all processes share) the student step ``i`` to train,
backward-simulates the student without gradients from noise to ``x_{t_i}`` (during the noisier warm-up: to the
point one grid step earlier, still labelled ``t_i``), and then:

1. every ``proxy_updates``-th iteration, :func:`generator_step` trains the student on
   - DMD with **timestep sharing**: the teacher (CFG) and proxy scores are taken at the student's own landing
     point ``x_{t_{i+1}}`` and the noise level it really has; the last step, landing at t = 0, has no shared
     timestep and gets no DMD term, or (``last_step_dmd: renoise``) its x0 estimate re-noised to a random t
     (``timestep_sharing: false`` re-noises every step that way); with ``sampler: stochastic`` the student
     moves as that sampler does (x0 estimate re-noised to the next grid time with fresh noise), in the backward
     simulation and at the shared landing point;
   - the adversarial term: the proxy's image tokens at ``disc_blocks`` for samples noised to ``disc_t_star`` feed
     the discriminator heads;
   - the gram loss (2-step student): gram matrices of teacher features of the student sample and of the teacher
     sample of the same prompt and noise (``student_noise: data``);
2. :func:`proxy_step`: flow matching of the proxy on the detached student samples;
3. :func:`disc_step`: the heads on real (teacher) vs fake (student) features; each head is re-initialised with
   probability ``disc_refresh`` (the same heads on every process: the refresh generator is shared).

Every process runs the same updates with the same terms in the same order whatever it drew (a step index is
either shared or per sample with masks, never a per-rank branch), so DDP's all-reduces always pair up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError, DataError
from ..flow import euler_step, interpolate, renoise, x0_from_v
from ..losses import DiscriminatorAdvLoss, DMDLoss, FlowMatchingLoss, GeneratorAdvLoss, GramLoss
from ..models.disc import MultiHeadDisc, disc_features
from ..models.sd3 import SD3Adapter
from ..pipelines.folders import guidance_of
from ..sampling import CFG
from ..timesteps import GridSampler, student_grid
from ..training.updates import ModelSlot, frozen
from ..types import Conditioning
from . import common
from .sd35_flash_parts import add_student, build, draw_steps, finish, preview, steps_sampler

__all__ = ["Parts", "distribution_matching", "dmd_point", "generator_step", "student_update", "proxy_step",
           "disc_step"]


@dataclass
class Parts:
    """Everything stage 2 trains or calls, built once by :func:`setup`."""

    cfg: object  # SD35FlashConfig
    run: object  # training.Run
    grid: torch.Tensor  # (K+1,) float64 on the CPU (indexing); moved per use
    teacher: CFG  # real score: the frozen teacher with CFG
    teacher_plain: SD3Adapter  # the frozen teacher without CFG (gram features)
    student: ModelSlot
    proxy: ModelSlot  # fake score, trained by flow matching on student samples
    disc: ModelSlot | None  # discriminator heads (None when adv_weight = 0)
    draws: object  # training.draws.GlobalDraws
    refresh_gen: torch.Generator  # shared by all processes: the same heads are refreshed everywhere
    sampler: GridSampler  # the student steps this run trains
    losses: dict  # built once from the config: dmd, fm, g_adv, d_adv, gram

    @property
    def device(self) -> torch.device:
        return self.run.device


def _trained_steps(cfg, grid: torch.Tensor) -> GridSampler:
    """Steps with a training signal: with timestep sharing, ``last_step_dmd: none`` and neither an adversarial nor
    a gram term, the last step (landing at t = 0) has none and is not drawn (the paper trains "i ∈ [2, 4]" of 4
    by DMD)."""
    sampler = steps_sampler(cfg, grid)
    if cfg.timestep_sharing and cfg.last_step_dmd == "none" and cfg.adv_weight == 0 and cfg.gram_weight == 0:
        kept = [i for i in sampler.allowed.tolist() if float(grid[i + 1]) > 0]
        if not kept:
            raise ConfigError(f"step_range {cfg.step_range}: its only step lands at t = 0, where timestep sharing "
                             "has no DMD term and adv_weight = 0 leaves nothing to train it")
        sampler = steps_sampler(cfg, grid, steps=kept)
    return sampler


def setup(cfg):
    from ..training.run import Run

    pipe, settings, teacher_net, student_net = build(cfg)
    data = common.open_dataset(cfg.data, teacher_pipe=pipe, teacher=cfg.teacher)
    if cfg.student_noise == "data" and "noise" not in data.fields:
        raise DataError(f"data {cfg.data}: student_noise: data needs the teacher's stored noise (field 'noise')")
    grid = student_grid(cfg.num_steps, shift=cfg.grid_shift)
    run = Run(cfg.train, config=cfg)
    teacher_net = run.add_frozen("teacher", teacher_net)
    teacher = CFG(SD3Adapter(teacher_net), data.null_cond().to(run.device), guidance_of(settings, cfg.guidance_scale))
    student, ema = add_student(run, cfg, student_net, math.ceil(cfg.train.max_steps / cfg.proxy_updates))
    proxy = run.add_model("proxy", common.copy_transformer(teacher_net), cfg.proxy_optim)
    disc = None
    if cfg.adv_weight > 0:
        width = teacher_net.config.num_attention_heads * teacher_net.config.attention_head_dim
        heads = MultiHeadDisc(width, len(cfg.disc_blocks), hidden=cfg.disc_hidden,
                              generator=torch.Generator(device="cpu").manual_seed(cfg.seed))
        disc = run.add_model("disc", heads, cfg.disc_optim)
    parts = Parts(cfg, run, grid, teacher, SD3Adapter(teacher_net), student, proxy, disc,
                  run.draws("draws", cfg.seed), run.generator("refresh", cfg.seed + 1, per_process=False),
                  _trained_steps(cfg, grid),
                  {"dmd": DMDLoss(normalise=cfg.dmd_normaliser == "mean_abs"), "fm": FlowMatchingLoss(None),
                   "g_adv": GeneratorAdvLoss(cfg.adv_loss), "d_adv": DiscriminatorAdvLoss(cfg.adv_loss),
                   "gram": GramLoss()})
    return parts, pipe, settings, data, ema


# ------------------------------------------------------------------------------------------- one iteration
def draw_iteration(parts: Parts, batch: dict, it: int) -> dict:
    """This process's share of the iteration's randomness, batch dimension first (micro-batches split it).
    The same draws are made on every iteration, whichever updates run, so the shared sequence never forks."""
    cfg, d, dev = parts.cfg, parts.draws, parts.device
    x0 = batch["latents"]
    b, shape = x0.shape[0], tuple(x0.shape[1:])
    i = draw_steps(cfg, parts.sampler, d, b)
    start = (i - 1).clamp_min(0) if it <= cfg.warmup_noisier else i  # noisier warm-up: one grid point earlier
    t_label, t_next, t_start = parts.grid[i], parts.grid[i + 1], parts.grid[start]
    # where the landing point really is: the input's true level plus the step the student was told to take
    t_score = t_next if cfg.warmup_score_at == "label" else (t_start + (t_next - t_label)).clamp_min(0.0)
    out = {"latents": x0.to(dev), "cond": batch["cond"].to(dev), "i": i, "start": start,
           "t_label": t_label.float().to(dev), "t_next": t_next.float().to(dev), "t_score": t_score.float().to(dev)}
    out["noise"] = (batch["noise"] if cfg.student_noise == "data" else d.randn((b, *shape))).to(dev)
    if not cfg.timestep_sharing or cfg.last_step_dmd == "renoise":
        lo, hi = cfg.renoise_t_range
        out["renoise_t"] = (lo + (hi - lo) * d.rand(b)).to(dev)
        out["renoise_noise"] = d.randn((b, *shape)).to(dev)
    levels = len(cfg.disc_t_star)
    if parts.disc is not None:
        out["d_noise_g"] = d.randn((levels, b, *shape), batch_dim=1).transpose(0, 1).to(dev)  # (B, L, ...)
    if cfg.gram_weight > 0:
        out["g_noise"] = d.randn((b, *shape)).to(dev)
    lo, hi = cfg.proxy_t_range
    out["fm_t"], out["fm_noise"] = (lo + (hi - lo) * d.rand(b)).to(dev), d.randn((b, *shape)).to(dev)
    if parts.disc is not None:
        out["d_noise_d"] = d.randn((levels, b, *shape), batch_dim=1).transpose(0, 1).to(dev)
    if cfg.sampler == "stochastic":  # drawn last: the deterministic sampler's sequence stays as it was
        steps = len(parts.grid) - 1  # one fresh noise per grid transition: (B, K, ...)
        out["path_noise"] = d.randn((steps, b, *shape), batch_dim=1).transpose(0, 1).to(dev)
        out["t_score"] = out["t_next"]  # the re-noised landing point is exactly at the next grid time
    return out


def _level_major(noise: torch.Tensor) -> torch.Tensor:
    """``(B, L, C, H, W)`` -> ``(L·B, C, H, W)``, the layout of :func:`disc_features`."""
    return noise.transpose(0, 1).reshape(-1, *noise.shape[2:])


def student_point(parts: Parts, mb: dict) -> torch.Tensor:
    """The backward-simulated input of the trained step (no gradients), ``(B, C, H, W)``."""
    student = SD3Adapter(parts.student.module)
    stop = mb["start"] if not parts.cfg.steps_per_batch else int(mb["start"][0])
    return common.backward_simulate(student, mb["noise"], parts.grid, stop, mb["cond"], mb.get("path_noise"))


def generator_step(parts: Parts, mb: dict, fakes: list) -> dict[str, torch.Tensor]:
    """The student's loss terms on one micro-batch (SD3.5-Flash §3: DMD with timestep sharing, adversarial, gram);
    appends the detached x0 estimates to ``fakes`` for the proxy and discriminator.

    Run it inside :func:`student_update`, which keeps the proxy and the heads frozen through the backward too."""
    cfg, run = parts.cfg, parts.run
    cond, t = mb["cond"], mb["t_label"]
    x = student_point(parts, mb)
    v = SD3Adapter(parts.student.model)(x, t, cond)  # the one step with gradients
    x0_s = x0_from_v(x, v, t)  # the student's x0 estimate at this step
    fakes.append(x0_s.detach())
    terms = {}
    proxy = SD3Adapter(parts.proxy.module)  # bare modules: fixed functions inside the student's update
    if cfg.dmd_weight > 0:
        x_t, t_s, mask = dmd_point(cfg, x, v, x0_s, mb)
        # one step for the whole batch landing at 0 without a DMD term (the same on every process): skip the scores
        if not (cfg.timestep_sharing and cfg.last_step_dmd == "none" and cfg.steps_per_batch
                and float(mb["t_score"][0]) <= 0):
            out = parts.losses["dmd"](parts.teacher, proxy, x0_s, x_t, t_s, cond)
            terms["dmd"] = cfg.dmd_weight * (out.loss * mask).mean()  # masked samples count as 0
            run.log(**out.logs)
    if parts.disc is not None:
        feats = disc_features(proxy, x0_s, cfg.disc_t_star, cond, cfg.disc_blocks, _level_major(mb["d_noise_g"]))
        out = parts.losses["g_adv"](parts.disc.module(feats), num_levels=len(cfg.disc_t_star))
        terms["adv"] = cfg.adv_weight * out.loss.mean()
    if cfg.gram_weight > 0:
        t_g = torch.full_like(t, cfg.gram_t)
        f_s = parts.teacher_plain.features(interpolate(x0_s, mb["g_noise"], t_g), t_g, cond, cfg.gram_blocks)
        with torch.no_grad():  # the teacher sample of the same prompt and noise is the target
            f_t = parts.teacher_plain.features(interpolate(mb["latents"], mb["g_noise"], t_g), t_g, cond,
                                               cfg.gram_blocks)
        terms["gram"] = cfg.gram_weight * parts.losses["gram"](f_s, f_t).loss.mean()
    return terms


def dmd_point(cfg, x: torch.Tensor, v: torch.Tensor, x0_s: torch.Tensor, mb: dict):
    """Where the DMD scores are taken: ``(x_t, t, mask)``. With timestep sharing, the student's own landing point
    ``x_{t_{i+1}}`` at the level it really has; a sample landing at t = 0 is masked out, or re-noised from its x0
    estimate (``last_step_dmd: renoise``). Without sharing, every x0 estimate is re-noised to ``renoise_t``."""
    if cfg.timestep_sharing:
        if cfg.sampler == "stochastic":  # the point the stochastic sampler really visits next
            rows = torch.arange(x.shape[0], device=x.device)
            x_t = renoise(x0_s.detach(), mb["t_next"], noise=mb["path_noise"][rows, mb["i"].to(x.device)])
        else:
            x_t = euler_step(x, v, mb["t_label"], mb["t_next"])
        t_s = mb["t_score"]
        landed = t_s > 0
        if cfg.last_step_dmd == "none":
            return x_t, t_s, landed.to(x0_s.dtype)
        renoised = interpolate(x0_s.detach(), mb["renoise_noise"], mb["renoise_t"])
        keep = landed.view(-1, *([1] * (x_t.dim() - 1)))
        return torch.where(keep, x_t, renoised), torch.where(landed, t_s, mb["renoise_t"]), torch.ones_like(t_s)
    x_t, t_s = interpolate(x0_s.detach(), mb["renoise_noise"], mb["renoise_t"]), mb["renoise_t"]
    return x_t, t_s, torch.ones_like(t_s)


def student_update(parts: Parts, mb: dict, fakes: list) -> dict:
    """One optimiser step of the student on :func:`generator_step`'s terms, with the proxy and the heads frozen
    (fixed functions inside the student's update) through forward *and* backward: gradient checkpointing
    recomputes their forwards during the backward, and a graph recomputed with trainable weights would not match
    the one saved (torch raises)."""
    with frozen(parts.proxy.module, *([parts.disc.module] if parts.disc else [])):
        return parts.run.update_accumulated("student", lambda m: generator_step(parts, m, fakes), mb)


@torch.no_grad()
def student_samples(parts: Parts, mb: dict) -> torch.Tensor:
    """The student's x0 estimate at the drawn step without gradients (iterations without a generator update)."""
    x = student_point(parts, mb)
    return x0_from_v(x, SD3Adapter(parts.student.module)(x, mb["t_label"], mb["cond"]), mb["t_label"])


def proxy_step(parts: Parts, mb: dict) -> dict[str, torch.Tensor]:
    """Flow matching of the proxy on detached student samples (the fake score tracks the student)."""
    out = parts.losses["fm"](SD3Adapter(parts.proxy.model), mb["fake"], mb["cond"], noise=mb["fm_noise"], t=mb["fm_t"])
    parts.run.log(**out.logs)
    return {"fm": out.loss.mean()}


def disc_step(parts: Parts, mb: dict) -> dict[str, torch.Tensor]:
    """The heads on real (teacher) vs fake (student) proxy features; real and fake of a level share the noise."""
    cfg = parts.cfg
    real, fake, cond = mb["latents"], mb["fake"], mb["cond"]
    b, levels = real.shape[0], len(cfg.disc_t_star)
    noise = _level_major(mb["d_noise_d"])  # (L·B, ...)
    paired = noise.view(levels, 1, b, *real.shape[1:]).expand(levels, 2, b, *real.shape[1:])
    with torch.no_grad():  # real and fake through the proxy in one call, the heads in one forward (DDP-safe)
        feats = disc_features(SD3Adapter(parts.proxy.module), torch.cat([real, fake]), cfg.disc_t_star,
                              Conditioning.cat([cond, cond]), cfg.disc_blocks,
                              paired.reshape(levels * 2 * b, *real.shape[1:]))
    logits = [lg.view(levels, 2, b) for lg in parts.disc.model(feats)]
    out = parts.losses["d_adv"]([lg[:, 0].reshape(-1) for lg in logits], [lg[:, 1].reshape(-1) for lg in logits],
                                num_levels=levels)
    parts.run.log(**{k: v for k, v in out.logs.items() if "/head" not in k})
    return {"disc": out.loss.mean()}


def distribution_matching(cfg) -> None:
    """Stage 2: DMD with timestep sharing + multi-head adversarial objective (+ gram for 2 steps)."""
    parts, pipe, settings, data, ema = setup(cfg)
    run = parts.run
    stream = run.data_stream("data", data, batch_size=cfg.batch_size)
    preview(run, pipe, data, SD3Adapter(parts.student.module), parts.grid, mode=cfg.sampler)
    gen_logs: dict = {}
    for it in run.steps():
        mb = draw_iteration(parts, next(stream), it)
        if (it - 1) % cfg.proxy_updates == 0:
            fakes: list[torch.Tensor] = []
            gen_logs = student_update(parts, mb, fakes)
            mb["fake"] = torch.cat(fakes)
        else:
            mb["fake"] = torch.cat([student_samples(parts, m) for m in _micro(run, mb)])
        run.update_accumulated("proxy", lambda m: proxy_step(parts, m), mb)
        if parts.disc is not None:
            run.update_accumulated("disc", lambda m: disc_step(parts, m), mb)
            if cfg.disc_refresh > 0:
                refreshed = parts.disc.module.refresh(cfg.disc_refresh, parts.refresh_gen, parts.disc.optimizer)
                run.state.counters["head_refreshes"] = run.state.counters.get("head_refreshes", 0) + len(refreshed)
        # the latest generator values on every row (so they survive any log.every); the same keys on every rank
        run.log(step_index=mb["i"].float().mean(), head_refreshes=run.state.counters.get("head_refreshes", 0),
                **gen_logs)
    finish(run, cfg, pipe, parts.student.module, parts.grid, settings, data, ema)


def _micro(run, mb: dict) -> list[dict]:
    from ..data.batch import split_batch

    return split_batch(mb, run.cfg.gradient_accumulation)
