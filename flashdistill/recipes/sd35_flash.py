"""SD3.5-Flash (Bandyopadhyay et al., arXiv 2509.21318): distribution-guided distillation of a flow model.

Run: ``flashdistill distill --config configs/sd35_flash/<stage>.yaml [key=value ...]``. One config = one stage:

* ``stage: pretrain`` — trajectory guidance (Eq. 4), this module. For each student-grid segment
  ``[t_i → t_{i+1}]`` the student's Euler jump from the teacher trajectory point ``x_{t_i}`` must land on the
  teacher's CFG ODE solution ``x_{t_{i+1}}``; trajectories come from ``flashdistill generate-data ...
  trajectory_grid=<student grid>`` (``trajectories: data``) or are solved per batch from fresh noise
  (``trajectories: online``).
* ``stage: dmd`` — distribution matching with timestep sharing + the multi-head adversarial objective (+ gram for
  the 2-step student), :mod:`flashdistill.recipes.sd35_flash_dmd`.

Every random draw is made for the global batch from generators all processes share, each process keeping its
slice (:class:`~flashdistill.training.draws.GlobalDraws`): N processes train exactly as 1 process does.
``train.gradient_accumulation`` splits each process's batch into micro-batches. The result is a diffusers
pipeline folder (``out``) that stock ``StableDiffusion3Pipeline`` runs in ``num_steps`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from ..config import ConfigError, register_config
from ..losses import TrajectoryLoss
from ..models.sd3 import SD3Adapter
from ..pipelines.folders import guidance_of
from ..sampling import CFG
from ..timesteps import student_grid
from ..training.configs import OptimConfig, TrainConfig
from . import common
from .sd35_flash_dmd import distribution_matching
from .sd35_flash_parts import add_student, build, draw_steps, finish, preview, steps_sampler

__all__ = ["SD35FlashConfig", "run_recipe", "STAGE_FIELDS"]


@register_config("sd35_flash")
@dataclass
class SD35FlashConfig:
    """One stage of SD3.5-Flash. Fields of the other stage must keep their defaults (``validate`` names them)."""

    stage: str = field(default="dmd", metadata={"choices": ["pretrain", "dmd"]})  # see the module docstring
    teacher: str = "sd3-nano"  # teacher pipeline folder ("sd3-nano" = shipped, "tiny" = test model)
    init_student: str | None = None  # start the student from an earlier stage's folder (default: teacher)
    data: str = ""  # generate-data folder: teacher samples (+ trajectories for pretrain) and embeddings
    out: str = "runs/sd35_flash/student"  # the student pipeline folder written at the end
    num_steps: int = field(default=4, metadata={"min": 1})  # student steps on the grid over [0, 1]
    # SD3 shift of the student grid: 1 = uniform (1, .75, .5, .25); 3 = (1, .9, .75, .5): shorter jumps at high
    # noise, where the layout is decided. Stage-1 data must hold these times (generate-data trajectory_grid).
    grid_shift: float = field(default=1.0, metadata={"min": 0.01})
    batch_size: int = field(default=16, metadata={"min": 1})  # global batch per iteration (all processes)
    guidance_scale: float | None = field(default=None, metadata={"min": 0.0})  # teacher CFG (None: teacher's)
    # how student steps are drawn: "per_batch" (one step for the whole global batch) or "per_sample";
    # null = the stage's default (pretrain: per_sample, dmd: per_batch)
    step_sampling: str | None = field(default=None, metadata={"choices": [None, "per_batch", "per_sample"]})
    step_range: list[float] | None = None  # train only steps starting at t in (lo, hi] (split branches)
    # relative frequency of each student step (one per step, t = 1 first; 0 = never drawn); null = uniform
    step_weights: list[float] | None = None
    ema_decay: float | None = field(default=None, metadata={"min": 0.0, "max": 0.99999})  # export an EMA
    ema_warmup: bool = False  # EMA decay min(decay, (1+n)/(10+n)): early averages follow the weights
    seed: int = 0  # seed of the shared random draws (noise, timesteps, step indices, head refresh)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/sd35_flash/run"))  # trainer
    student_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-6))  # AdamW, student
    # --- stage pretrain
    trajectories: str = field(default="data", metadata={"choices": ["data", "online"]})  # stored or solved per batch
    teacher_steps: int = field(default=28, metadata={"min": 1})  # online: teacher Euler steps (shifted grid)
    # segment weights of Eq. 4: "equal" (velocity-space MSE), "t_i" (the paper's t_i·residual), "position"
    tg_weighting: str = field(default="equal", metadata={"choices": list(TrajectoryLoss.WEIGHTINGS)})
    # --- stage dmd
    proxy_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6))  # AdamW, proxy (fake score)
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5))  # AdamW, discriminator heads
    proxy_updates: int = field(default=10, metadata={"min": 1})  # proxy/disc updates per generator update
    timestep_sharing: bool = True  # scores at the student's own trajectory points (false: re-noise, ablation)
    dmd_weight: float = field(default=1.0, metadata={"min": 0.0})  # weight of the DMD term (0 = off)
    # DMD gradient normaliser: "mean_abs" (DMD's per-sample mean |x0_student - x0_real|) or "none"
    dmd_normaliser: str = field(default="mean_abs", metadata={"choices": ["mean_abs", "none"]})
    renoise_t_range: list[float] = field(default_factory=lambda: [0.02, 0.98])  # re-noising: t ~ U(range)
    # with timestep sharing, the step landing at t = 0 has no shared timestep: "none" gives it no DMD term (the
    # paper's "i in [2, 4]"); "renoise" scores its x0 estimate re-noised to t ~ U(renoise_t_range), as DMD does
    last_step_dmd: str = field(default="none", metadata={"choices": ["none", "renoise"]})
    proxy_t_range: list[float] = field(default_factory=lambda: [0.02, 1.0])  # proxy flow-matching t ~ U(range)
    student_noise: str = field(default="fresh", metadata={"choices": ["fresh", "data"]})  # fresh draws, or the
    # dataset's stored teacher noise (pairs each student sample with the teacher sample of its noise: gram)
    adv_weight: float = field(default=0.1, metadata={"min": 0.0})  # weight of the generator adversarial term
    adv_loss: str = field(default="non_saturating", metadata={"choices": ["non_saturating", "lsgan", "hinge"]})
    disc_blocks: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 8, 10, 11])  # proxy blocks tapped
    disc_t_star: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])  # noise levels of disc inputs
    disc_hidden: int = field(default=256, metadata={"min": 1})  # width of the discriminator MLPs
    disc_refresh: float = field(default=0.005, metadata={"min": 0.0, "max": 1.0})  # per-head reset probability
    warmup_noisier: int = field(default=0, metadata={"min": 0})  # iterations fed the noisier previous point
    # where the warm-up's landing point is scored: "actual" (the noise level it really has) or "label" (the grid
    # time it was told, one point off)
    warmup_score_at: str = field(default="actual", metadata={"choices": ["actual", "label"]})
    gram_weight: float = field(default=0.0, metadata={"min": 0.0})  # gram-matrix loss weight (2-step stage)
    gram_blocks: list[int] = field(default_factory=lambda: [8])  # teacher blocks for the gram features
    gram_t: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # noise level of the gram features
    # how the student moves between its steps, in training and in the exported folder: "deterministic" (the Euler
    # jump, the paper) or "stochastic" (each x0 estimate re-noised to the next grid time with fresh noise, as the
    # Flash Diffusion student runs); backward simulation and the timestep-shared landing points follow it
    sampler: str = field(default="deterministic", metadata={"choices": ["deterministic", "stochastic"]})

    def validate(self) -> None:
        unused = [f.name for f in fields(self) if f.name in STAGE_FIELDS[_other(self.stage)]
                  and getattr(self, f.name) != _DEFAULTS[f.name]]
        if self.stage == "pretrain" and self.trajectories == "data":
            unused += [k for k in ("teacher_steps", "guidance_scale") if getattr(self, k) != _DEFAULTS[k]]
        if unused:
            raise ConfigError(f"stage {self.stage} does not use {', '.join(unused)}: remove "
                              f"{'it' if len(unused) == 1 else 'them'} (or set stage: {_other(self.stage)})")
        if self.step_range is not None and (len(self.step_range) != 2 or not
                                            0 <= self.step_range[0] < self.step_range[1] <= 1):
            raise ConfigError(f"step_range = {self.step_range} must be [lo, hi] with 0 <= lo < hi <= 1")
        if self.step_weights is not None and (len(self.step_weights) != self.num_steps
                                              or any(not w >= 0 for w in self.step_weights)
                                              or not sum(self.step_weights) > 0):
            raise ConfigError(f"step_weights = {self.step_weights} must be {self.num_steps} numbers >= 0 (one per "
                              "student step, t = 1 first), not all 0")
        if any(not 0 <= t < 1 for t in self.disc_t_star) or not self.disc_t_star:
            raise ConfigError(f"disc_t_star = {self.disc_t_star}: give levels in [0, 1) (t = 1 is pure noise)")
        for key in ("renoise_t_range", "proxy_t_range"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1] <= 1:
                raise ConfigError(f"{key} = {lo_hi} must be [lo, hi] with 0 <= lo < hi <= 1")
        if self.last_step_dmd != "none" and not self.timestep_sharing:
            raise ConfigError("last_step_dmd: without timestep_sharing every step is already re-noised; remove it")
        if self.stage == "dmd" and self.gram_weight > 0 and self.student_noise != "data":
            raise ConfigError("gram_weight > 0 compares each student sample with the teacher sample of the same "
                              "prompt and noise: set student_noise: data")
        if self.sampler == "stochastic" and self.warmup_score_at != "actual":
            raise ConfigError("warmup_score_at: with sampler: stochastic the landing point is the x0 estimate "
                              "re-noised to the next grid time, which is its actual level; remove warmup_score_at")
        if self.stage == "dmd" and self.dmd_weight == 0 and self.adv_weight == 0 and self.gram_weight == 0:
            raise ConfigError("dmd_weight, adv_weight and gram_weight are all 0: nothing trains the student")

    @property
    def steps_per_batch(self) -> bool:
        """True when one student step is drawn for the whole batch (the stage's default when unset)."""
        mode = self.step_sampling or ("per_sample" if self.stage == "pretrain" else "per_batch")
        return mode == "per_batch"


STAGE_FIELDS = {
    "pretrain": {"trajectories", "teacher_steps", "tg_weighting"},
    "dmd": {"proxy_optim", "disc_optim", "proxy_updates", "timestep_sharing", "dmd_weight", "dmd_normaliser",
            "renoise_t_range", "last_step_dmd", "proxy_t_range", "student_noise", "adv_weight", "adv_loss",
            "disc_blocks", "disc_t_star", "disc_hidden", "disc_refresh", "warmup_noisier", "warmup_score_at",
            "gram_weight", "gram_blocks", "gram_t", "sampler"},
}
def _other(stage: str) -> str:
    return "dmd" if stage == "pretrain" else "pretrain"


_DEFAULTS = {f.name: getattr(SD35FlashConfig(), f.name) for f in fields(SD35FlashConfig)}


# ------------------------------------------------------------------------------------------- stage 1
def pretrain(cfg: SD35FlashConfig) -> None:
    """Stage 1: trajectory guidance on stored or freshly solved teacher trajectories."""
    from ..training.run import Run

    pipe, settings, teacher_net, student_net = build(cfg)
    online = cfg.trajectories == "online"
    data = common.open_dataset(cfg.data, need_trajectory=not online, teacher_pipe=pipe, teacher=cfg.teacher)
    grid = student_grid(cfg.num_steps, shift=cfg.grid_shift)
    run = Run(cfg.train, config=cfg)
    if online:  # the teacher's CFG ODE from fresh noise, on its shifted grid refined to hold the student's
        from ..data.generate_config import teacher_grid

        shift = float(pipe.scheduler.config.get("shift", 1.0))
        t_grid, positions = teacher_grid(cfg.teacher_steps, shift, grid.tolist())
        teacher = CFG(SD3Adapter(run.add_frozen("teacher", teacher_net)), data.null_cond().to(run.device),
                      guidance_of(settings, cfg.guidance_scale))
    else:
        positions = common.trajectory_index(data.meta["trajectory_grid"], grid)
    slot, ema = add_student(run, cfg, student_net, cfg.train.max_steps)
    stream = run.data_stream("data", data, batch_size=cfg.batch_size)
    draws = run.draws("draws", cfg.seed)
    sampler = steps_sampler(cfg, grid)
    loss_fn, student = TrajectoryLoss(cfg.tg_weighting), SD3Adapter(slot.model)
    preview(run, pipe, data, SD3Adapter(slot.module), grid)

    def terms(mb):
        out = loss_fn(student, mb["x_ti"], mb["t_i"], mb["t_j"], mb["x_tj"], mb["cond"])
        run.log(**out.logs)
        return {"tg": out.loss.mean()}

    for _ in run.steps():
        batch = next(stream)
        cond, b = batch["cond"].to(run.device), batch["latents"].shape[0]
        i = draw_steps(cfg, sampler, draws, b)
        if online:
            noise = draws.randn(batch["latents"].shape).to(run.device)
            traj = common.teacher_points(teacher, noise, t_grid.to(run.device), positions, cond)
            pos = torch.arange(len(grid))
        else:
            traj, pos = batch["trajectory"].to(run.device), torch.tensor(positions)
        rows = torch.arange(b)
        micro = {"x_ti": traj[rows, pos[i]], "x_tj": traj[rows, pos[i + 1]], "cond": cond,
                 "t_i": grid[i].float().to(run.device), "t_j": grid[i + 1].float().to(run.device)}
        run.update_accumulated("student", terms, micro)
    finish(run, cfg, pipe, slot.module, grid, settings, data, ema)


def run_recipe(cfg: SD35FlashConfig) -> None:
    (pretrain if cfg.stage == "pretrain" else distribution_matching)(cfg)
