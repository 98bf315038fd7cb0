"""SD3.5-Flash (Bandyopadhyay et al., arXiv 2509.21318): distribution-guided distillation of a flow model.

Run: ``flashdistill distill --config configs/sd35_flash/<stage>.yaml [key=value ...]``. One config = one stage:

* ``stage: pretrain`` — trajectory guidance (Eq. 4). For each student-grid segment ``[t_i → t_{i+1}]`` the
  student's Euler jump from the teacher trajectory point ``x_{t_i}`` must land on the teacher's CFG ODE solution
  ``x_{t_{i+1}}``; trajectories come from ``flashdistill generate-data ... trajectory_grid=<student grid>``
  (``trajectories: data``) or are solved per batch from fresh noise (``trajectories: online``, ``teacher_steps``
  shifted Euler steps; the data then only supplies prompts' embeddings).
* ``stage: dmd`` — distribution matching + adversarial objective. Each iteration draws one student step ``i``,
  backward-simulates the student (no gradients) from noise to ``x_{t_i}`` (with the noisier warm-up: the sample
  of one grid point earlier for the first ``warmup_noisier`` iterations), then takes that step.
  Every ``proxy_updates``-th iteration is a generator update:
    - DMD with **timestep sharing**: scores are taken at the student's own landing point ``x_{t_{i+1}}`` and its
      grid time — no fresh noise. The last step (landing at t = 0) has no shared timestep and is trained by the
      adversarial term only. ``timestep_sharing: false`` is the classic re-noising at a random t (ablation).
    - adversarial: the proxy's image tokens at ``disc_blocks`` for samples noised to ``disc_t_star`` feed
      multi-head MLP discriminators (non-saturating loss); real = teacher samples from the dataset.
    - gram (2-step stage): MSE of gram matrices of teacher-sample and student-sample features.
  Every iteration trains the proxy (flow matching on detached student samples) and the discriminator heads,
  each head re-initialised with probability ``disc_refresh`` (optimiser state cleared).
  ``step_range`` restricts training to steps starting in ``(lo, hi]`` — the split-timestep branches — and
  ``ema_decay`` exports an EMA of the student.

The result is a diffusers pipeline folder (``out``) that stock ``StableDiffusion3Pipeline`` runs in
``num_steps`` steps; see :func:`flashdistill.recipes.common.save_student`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..config import ConfigError, register_config
from ..losses import (
    DiscriminatorAdvLoss,
    DMDLoss,
    FlowMatchingLoss,
    GeneratorAdvLoss,
    GramLoss,
    TrajectoryLoss,
    renoised_point,
)
from ..models.disc import MultiHeadDisc, disc_features
from ..models.sd3 import SD3Adapter
from ..pipelines.sample import guidance_of
from ..sampling import CFG
from ..timesteps import GridSampler, Uniform, student_grid
from ..training.configs import OptimConfig, TrainConfig
from ..training.updates import frozen
from ..types import Conditioning
from . import common

__all__ = ["SD35FlashConfig", "run_recipe"]


@register_config("sd35_flash")
@dataclass
class SD35FlashConfig:
    """One stage of SD3.5-Flash."""

    stage: str = field(default="dmd", metadata={"choices": ["pretrain", "dmd"]})  # see the module docstring
    teacher: str = "sd3-nano"  # teacher pipeline folder ("sd3-nano" = shipped, "tiny" = test model)
    init_student: str | None = None  # start the student from an earlier stage's folder (default: teacher)
    data: str = ""  # generate-data folder: teacher samples (+ trajectories for pretrain) and embeddings
    out: str = "runs/sd35_flash/student"  # the student pipeline folder written at the end
    num_steps: int = field(default=4, metadata={"min": 1})  # student steps on the uniform grid over [0, 1]
    batch_size: int = field(default=16, metadata={"min": 1})  # samples per iteration
    guidance_scale: float | None = field(default=None, metadata={"min": 0.0})  # teacher CFG (None: teacher's)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/sd35_flash/run"))  # trainer
    student_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-6))  # AdamW, student
    proxy_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6))  # AdamW, proxy (fake score)
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5))  # AdamW, discriminator heads
    # --- stage pretrain
    trajectories: str = field(default="data", metadata={"choices": ["data", "online"]})  # stored or solved per batch
    teacher_steps: int = field(default=28, metadata={"min": 1})  # online: teacher Euler steps (shifted grid)
    # --- stage dmd
    proxy_updates: int = field(default=10, metadata={"min": 1})  # proxy/disc updates per generator update
    timestep_sharing: bool = True  # scores at the student's own trajectory points (false: re-noise, ablation)
    dmd_weight: float = field(default=1.0, metadata={"min": 0.0})  # weight of the DMD term (0 = off)
    adv_weight: float = field(default=0.1, metadata={"min": 0.0})  # weight of the generator adversarial term
    adv_loss: str = field(default="non_saturating", metadata={"choices": ["non_saturating", "lsgan", "hinge"]})
    disc_blocks: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 8, 10, 11])  # proxy blocks tapped
    disc_t_star: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])  # noise levels of disc inputs
    disc_hidden: int = field(default=256, metadata={"min": 1})  # width of the discriminator MLPs
    disc_refresh: float = field(default=0.005, metadata={"min": 0.0, "max": 1.0})  # per-head reset probability
    warmup_noisier: int = field(default=0, metadata={"min": 0})  # iterations fed the noisier previous point
    gram_weight: float = field(default=0.0, metadata={"min": 0.0})  # gram-matrix loss weight (2-step stage)
    gram_blocks: list[int] = field(default_factory=lambda: [8])  # teacher blocks for the gram features
    step_range: list[float] | None = None  # train only steps starting at t in (lo, hi] (split branches)
    ema_decay: float | None = field(default=None, metadata={"min": 0.0, "max": 0.99999})  # export an EMA
    seed: int = 0  # noise seed

    def validate(self) -> None:
        if self.step_range is not None and (len(self.step_range) != 2 or not
                                            0 <= self.step_range[0] < self.step_range[1] <= 1):
            raise ConfigError(f"step_range = {self.step_range} must be [lo, hi] with 0 <= lo < hi <= 1")
        if any(not 0 < t < 1 for t in self.disc_t_star):
            raise ConfigError(f"disc_t_star = {self.disc_t_star}: every level must lie in (0, 1)")


def _build(cfg: SD35FlashConfig):
    pipe, settings = common.load_teacher_pipeline(cfg.teacher)
    teacher_net = pipe.transformer.requires_grad_(False).eval()
    student_net = (common.load_student_transformer(cfg.init_student, teacher_net) if cfg.init_student
                   else common.copy_transformer(teacher_net))
    return pipe, settings, teacher_net, student_net


def _finish(run, cfg, pipe, student_net, grid, settings, data, ema=None):
    if not run.is_main:
        return
    net = copy.deepcopy(student_net)
    if ema is not None:
        ema.copy_to(net)
    # the T5 length and resolution the student was trained with (the data's, else the teacher folder's)
    extra = {"recipe": "sd35_flash", "stage": cfg.stage}
    for key in ("max_sequence_length", "resolution"):
        value = data.meta.get(key) or settings.get(key)
        if value:
            extra[key] = value
    common.save_student(pipe, net.eval(), cfg.out, grid.tolist(), extra)
    print(f"student written to {cfg.out}")


def _sample_grid(run, pipe, data, student, grid):
    """Register a callback drawing the student's samples for 8 fixed dataset prompts (``log.samples_every``)."""
    from ..data.batch import collate
    from ..models.vae import LatentCodec
    from ..sampling import student_sample

    items = [data[i] for i in range(min(8, len(data)))]
    cond = collate([it["cond"] for it in items]) if items else None
    codec = LatentCodec(pipe.vae.to(run.device))

    def draw(step: int):
        shape = items[0]["latents"].shape
        noise = torch.randn((len(items), *shape), generator=torch.Generator().manual_seed(0)).to(run.device)
        with torch.no_grad():
            x0 = student_sample(student, noise, grid.to(run.device), cond.to(run.device))
        return (codec.decode(x0) + 1) / 2

    if items:
        run.on_samples(draw)


def pretrain(cfg: SD35FlashConfig) -> None:
    """Stage 1: trajectory guidance on stored or freshly solved teacher trajectories."""
    from ..training.run import Run

    pipe, settings, teacher_net, student_net = _build(cfg)
    online = cfg.trajectories == "online"
    data = common.open_dataset(cfg.data, need_trajectory=not online)
    grid = student_grid(cfg.num_steps)
    run = Run(cfg.train, config=cfg)
    if online:  # the teacher's CFG ODE from fresh noise, on its shifted grid refined to hold the student's
        from ..data.generate import teacher_grid

        shift = float(pipe.scheduler.config.get("shift", 1.0))
        t_grid, positions = teacher_grid(cfg.teacher_steps, shift, grid.tolist())
        t_grid = t_grid.to(run.device)
        teacher = CFG(SD3Adapter(run.add_frozen("teacher", teacher_net)), data.null_cond().to(run.device),
                      guidance_of(settings, cfg.guidance_scale))
    else:
        positions = common.trajectory_index(data.meta["trajectory_grid"], grid)
    slot = run.add_model("student", student_net, cfg.student_optim)
    ema = run.add_ema("student_ema", of="student", decay=cfg.ema_decay) if cfg.ema_decay else None
    stream = run.data_stream("data", data, batch_size=cfg.batch_size)
    gen = run.generator("steps", cfg.seed)
    steps = GridSampler(grid, tuple(cfg.step_range) if cfg.step_range else None)
    loss_fn = TrajectoryLoss()
    student = SD3Adapter(slot.model)
    _sample_grid(run, pipe, data, SD3Adapter(slot.module), grid)
    for _ in run.steps():
        batch = next(stream)
        cond = batch["cond"].to(run.device)
        if online:
            noise = torch.randn(batch["latents"].shape, generator=gen, device=run.device)
            traj, pos_grid = common.teacher_points(teacher, noise, t_grid, positions, cond), range(len(grid))
        else:
            traj, pos_grid = batch["trajectory"].to(run.device), positions
        i = steps(traj.shape[0], generator=gen)
        rows = torch.arange(traj.shape[0])
        pos = torch.tensor(list(pos_grid))
        x_ti, x_tj = traj[rows, pos[i]], traj[rows, pos[i + 1]]
        out = loss_fn(student, x_ti, grid[i].float(), grid[i + 1].float(), x_tj, cond)
        run.update("student", {"tg": out.loss.mean()})
        run.log(**out.logs)
    _finish(run, cfg, pipe, slot.module, grid, settings, data, ema)


def distribution_matching(cfg: SD35FlashConfig) -> None:
    """Stage 2: DMD with timestep sharing + multi-head adversarial objective (+ gram for 2 steps)."""
    from ..training.run import Run

    pipe, settings, teacher_net, student_net = _build(cfg)
    data = common.open_dataset(cfg.data)
    grid = student_grid(cfg.num_steps)
    run = Run(cfg.train, config=cfg)
    device = run.device
    teacher_net = run.add_frozen("teacher", teacher_net)
    null = data.null_cond().to(device)
    teacher = CFG(SD3Adapter(teacher_net), null, guidance_of(settings, cfg.guidance_scale))
    s_slot = run.add_model("student", student_net, cfg.student_optim)
    p_slot = run.add_model("proxy", common.copy_transformer(teacher_net), cfg.proxy_optim)
    width = teacher_net.config.num_attention_heads * teacher_net.config.attention_head_dim
    use_adv = cfg.adv_weight > 0
    if use_adv:
        disc = MultiHeadDisc(width, len(cfg.disc_blocks), hidden=cfg.disc_hidden,
                             generator=torch.Generator().manual_seed(cfg.seed))
        d_slot = run.add_model("disc", disc, cfg.disc_optim)
    ema = run.add_ema("student_ema", of="student", decay=cfg.ema_decay) if cfg.ema_decay else None
    stream = run.data_stream("data", data, batch_size=cfg.batch_size)
    gen = run.generator("noise", cfg.seed)
    refresh_gen = run.generator("refresh", cfg.seed + 1, per_process=False)
    steps = GridSampler(grid, tuple(cfg.step_range) if cfg.step_range else None)
    dmd, fm = DMDLoss(), FlowMatchingLoss(Uniform(0.02, 1.0))
    g_adv, d_adv, gram = GeneratorAdvLoss(cfg.adv_loss), DiscriminatorAdvLoss(cfg.adv_loss), GramLoss()
    t_renoise = Uniform(0.02, 0.98)
    levels = len(cfg.disc_t_star)
    gen_logs: dict[str, float] = {}
    student, proxy = SD3Adapter(s_slot.model), SD3Adapter(p_slot.model)
    proxy_fixed, teacher_plain = SD3Adapter(p_slot.module), SD3Adapter(teacher_net)
    _sample_grid(run, pipe, data, SD3Adapter(s_slot.module), grid)
    for it in run.steps():
        batch = next(stream)
        real_x0, cond = batch["latents"].to(device), batch["cond"].to(device)
        b = real_x0.shape[0]
        noise = torch.randn(real_x0.shape, generator=gen, device=device)
        i = int(steps(1, generator=gen)[0])
        t_i, t_next = grid[i].float().to(device), grid[i + 1].float().to(device)
        x = common.backward_simulate(student, noise, grid.to(device), i, cond, noisier=it <= cfg.warmup_noisier)
        generator_step = (it - 1) % cfg.proxy_updates == 0
        with torch.set_grad_enabled(generator_step):
            v = student(x, t_i.expand(b), cond)
        x0_s = x - t_i * v  # the student's x0 estimate at this step (B, C, H, W)
        x_land = x + (t_next - t_i) * v  # its Euler landing point at t_{i+1}
        if generator_step:
            terms, gen_logs = {}, {}
            with frozen(p_slot.module, *( [d_slot.module] if use_adv else [])):
                if cfg.dmd_weight > 0 and (float(t_next) > 0 or not cfg.timestep_sharing):
                    if cfg.timestep_sharing:
                        x_t, t = x_land, t_next.expand(b)  # timestep sharing: the student's own point
                    else:
                        x_t, t = renoised_point(x0_s, t_renoise, generator=gen)
                    out = dmd(x0_s, x_t, t, cond, teacher, proxy_fixed)
                    terms["dmd"] = cfg.dmd_weight * out.loss.mean()
                    gen_logs.update(out.logs)
                if use_adv:
                    d_noise = torch.randn((levels * b, *x0_s.shape[1:]), generator=gen, device=device)
                    feats = disc_features(proxy_fixed, x0_s, cfg.disc_t_star, cond, cfg.disc_blocks, d_noise)
                    out = g_adv(d_slot.module(feats), num_levels=levels)  # frozen heads: bare module
                    terms["adv"] = cfg.adv_weight * out.loss.mean()
                if cfg.gram_weight > 0:
                    t_g = torch.full((b,), 0.5, device=device)
                    g_noise = torch.randn(real_x0.shape, generator=gen, device=device)
                    f_s = teacher_plain.features(x0_s * 0.5 + g_noise * 0.5, t_g, cond, cfg.gram_blocks)
                    with torch.no_grad():
                        f_t = teacher_plain.features(real_x0 * 0.5 + g_noise * 0.5, t_g, cond, cfg.gram_blocks)
                    terms["gram"] = cfg.gram_weight * gram(f_s, f_t).loss.mean()
            if terms:
                gen_logs.update(run.update("student", terms))
        x0_fake = x0_s.detach()
        run.update("proxy", {"fm": fm(proxy, x0_fake, cond, generator=gen).loss.mean()})
        if use_adv:
            d_noise = torch.randn((levels * b, *x0_fake.shape[1:]), generator=gen, device=device)
            # real and fake through the proxy in one call, and the heads in one forward (DDP-safe): per noise
            # level the batch is [real (B), fake (B)], each pair sharing its noise
            shared = d_noise.view(levels, 1, b, *x0_fake.shape[1:]).expand(levels, 2, b, *x0_fake.shape[1:])
            with torch.no_grad():
                feats = disc_features(proxy_fixed, torch.cat([real_x0, x0_fake]), cfg.disc_t_star,
                                      Conditioning.cat([cond, cond]), cfg.disc_blocks,
                                      shared.reshape(levels * 2 * b, *x0_fake.shape[1:]))
            logits = [lg.view(levels, 2, b) for lg in d_slot.model(feats)]
            out = d_adv([lg[:, 0].reshape(-1) for lg in logits], [lg[:, 1].reshape(-1) for lg in logits],
                        num_levels=levels)
            run.update("disc", {"disc": out.loss.mean()})
            run.log(**{k: v for k, v in out.logs.items() if "/head" not in k})
            if cfg.disc_refresh > 0:
                refreshed = d_slot.module.refresh(cfg.disc_refresh, refresh_gen, d_slot.optimizer)
                run.state.counters["head_refreshes"] = run.state.counters.get("head_refreshes", 0) + len(refreshed)
        # generator values are logged on every row (the latest update's), so they survive any log.every
        run.log(step_index=i, head_refreshes=run.state.counters.get("head_refreshes", 0), **gen_logs)
    _finish(run, cfg, pipe, s_slot.module, grid, settings, data, ema)


def run_recipe(cfg: SD35FlashConfig) -> None:
    (pretrain if cfg.stage == "pretrain" else distribution_matching)(cfg)
