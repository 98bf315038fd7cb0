"""The settings of the Flash Diffusion recipe (:mod:`flashdistill.recipes.flash_diffusion`), one YAML per run.

Every key is used or rejected: a key that only matters for another choice (``lora_rank`` with ``student: full``,
``proxy_optim`` without ``dmd_fake: proxy``, ...) must keep its default, and ``validate`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import ConfigError, register_config
from ..losses import ADV_KINDS
from ..timesteps import FLASH_MODE_WEIGHTS
from ..training.configs import OptimConfig, TrainConfig

__all__ = ["FlashDiffusionConfig"]


@register_config("flash_diffusion")
@dataclass
class FlashDiffusionConfig:
    """Flash Diffusion (Chadebec et al. 2024, arXiv 2406.02347, Alg. 1)."""

    teacher: str = "sd3-nano"  # teacher pipeline folder ("sd3-nano" = shipped, "tiny" = test model)
    data: str = ""  # generate-data folder: latents z_0 of real pairs (images=...) or teacher samples, + embeddings
    out: str = "runs/flash_diffusion/student"  # LoRA folder (student: lora) or pipeline folder (student: full)
    num_steps: int = field(default=4, metadata={"min": 1})  # student steps at inference (uniform grid), recorded
    # the sampler recorded for inference: "stochastic" re-noises each x0 estimate with fresh noise (LCM-style, the
    # distribution the student is trained on: real data noised with independent noise); "deterministic": Euler
    sampler: str = field(default="stochastic", metadata={"choices": ["stochastic", "deterministic"]})
    batch_size: int = field(default=16, metadata={"min": 1})  # global batch per iteration (all processes)
    seed: int = 0  # seed of the shared random draws (noise, t, guidance, disc levels, DMD times)
    # --- the student
    student: str = field(default="lora", metadata={"choices": ["lora", "full"]})  # LoRA on the teacher, or all
    lora_rank: int = field(default=16, metadata={"min": 1})  # LoRA rank r
    lora_alpha: float | None = field(default=None, metadata={"min": 0.0})  # LoRA alpha (null: = rank, scale 1)
    lora_targets: list[str] | None = None  # module-name suffixes (null: every attention projection, attn2 too)
    # --- distillation loss (Eq. 6): teacher CFG ODE from z_t down the K-point grid vs the student's one step
    K: int = field(default=32, metadata={"min": 4})  # grid points (a multiple of 4)
    # the K-point grid and the student's sigmas are shift(j/K) with SD3's shift s·t/(1+(s−1)·t): 1 = uniform in
    # flow time; null = the teacher scheduler's own shift (its grid, as the paper takes the teacher's timesteps)
    grid_shift: float | None = field(default=1.0, metadata={"min": 0.01})
    guidance_range: list[float] = field(default_factory=lambda: [3.0, 13.0])  # ω ~ U[lo, hi] per sample; lo = hi
    distill_loss: str = field(default="mse", metadata={"choices": ["mse", "perceptual", "lpips"]})  # "perceptual":
    # the FD feature network on decoded images (Shapes); "lpips": LPIPS on decoded images from lpips_weights
    lpips_weights: str | None = None  # a local state dict of lpips.LPIPS(net=lpips_net) (never downloaded)
    lpips_net: str = field(default="vgg", metadata={"choices": ["vgg", "alex", "squeeze"]})  # its backbone
    # --- timestep distribution (Eq. 7) and phases
    timestep_dist: str = field(default="mixture", metadata={"choices": ["mixture", "uniform"]})  # π(t) on the grid
    timestep_var: float = field(default=0.5, metadata={"min": 1e-6})  # variance of each mode, in grid points²
    mode_weights: list[list[float]] = field(default_factory=lambda: [list(r) for r in FLASH_MODE_WEIGHTS])  # per
    # phase: weights of the modes at K/4, K/2, 3K/4, K (t = .25, .5, .75, 1 for a flow teacher)
    phase_every: int = field(default=5000, metadata={"min": 1})  # iterations per phase (the last phase holds)
    adv_weights: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3])  # λ_adv per phase
    dmd_weights: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.5, 0.7])  # λ_DMD per phase
    # --- adversarial term (Eq. 8): frozen-teacher features of re-noised samples -> CNN heads
    adv_loss: str = field(default="lsgan", metadata={"choices": list(ADV_KINDS)})  # LSGAN (paper), hinge, NS
    disc_blocks: list[int] = field(default_factory=lambda: [2, 4])  # teacher blocks tapped (image tokens)
    disc_t_levels: list[float] = field(default_factory=lambda: [0.01, 0.25, 0.5, 0.75])  # t' drawn per sample
    disc_hidden: int = field(default=256, metadata={"min": 1})  # channels of the CNN heads
    disc_num_down: int = field(default=2, metadata={"min": 1})  # stride-2 convolutions per head
    # --- DMD term (Eq. 9)
    dmd_fake: str = field(default="student", metadata={"choices": ["student", "proxy"]})  # the fake score: the
    # student itself (the paper), or a proxy trained by flow matching on student samples (as SD3.5-Flash)
    dmd_t_range: list[float] = field(default_factory=lambda: [0.02, 0.98])  # t'' ~ U[lo, hi]
    # --- optimisers and trainer
    student_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))  # AdamW, student
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))  # AdamW, discriminator heads
    proxy_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))  # AdamW, proxy (dmd_fake: proxy)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/flash_diffusion/run"))  # trainer

    def validate(self) -> None:
        unused = [name for name, needed in _CONDITIONAL.items() if not needed(self)
                  and getattr(self, name) != _DEFAULTS[name]]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: not used with these settings (see the comment of each key in "
                              "flashdistill/recipes/flash_diffusion_config.py); remove "
                              f"{'it' if len(unused) == 1 else 'them'}")
        if self.K % 4:
            raise ConfigError(f"K = {self.K} must be a multiple of 4 (the modes sit at K/4, K/2, 3K/4, K)")
        lo_hi = self.guidance_range
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1]:
            raise ConfigError(f"guidance_range = {lo_hi} must be [lo, hi] with 0 <= lo <= hi (lo = hi: fixed)")
        for k, row in enumerate(self.mode_weights):
            if len(row) != 4 or any(w < 0 for w in row) or abs(sum(row) - 1) > 1e-6:
                raise ConfigError(f"mode_weights[{k}] = {row}: give 4 non-negative weights summing to 1")
        phases = len(self.mode_weights)
        for key in ("adv_weights", "dmd_weights"):
            values = getattr(self, key)
            if len(values) != phases or any(v < 0 for v in values):
                raise ConfigError(f"{key} = {values}: give one non-negative weight per phase ({phases}, the rows "
                                  "of mode_weights)")
        if not self.disc_t_levels or any(not 0 <= t < 1 for t in self.disc_t_levels):
            raise ConfigError(f"disc_t_levels = {self.disc_t_levels}: give levels in [0, 1)")
        if not self.disc_blocks:
            raise ConfigError("disc_blocks: give at least one teacher block to tap")
        lo_hi = self.dmd_t_range
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1] <= 1:
            raise ConfigError(f"dmd_t_range = {lo_hi} must be [lo, hi] with 0 <= lo < hi <= 1")
        if self.distill_loss == "lpips" and not self.lpips_weights:
            raise ConfigError("distill_loss: lpips needs lpips_weights, a local file of LPIPS weights (nothing is "
                              "downloaded); on Shapes use distill_loss: perceptual")

    def check_paths(self) -> None:
        if self.lpips_weights and not Path(self.lpips_weights).is_file():
            raise ConfigError(f"lpips_weights: no such file {self.lpips_weights}")

    @property
    def uses_disc(self) -> bool:
        return any(w > 0 for w in self.adv_weights)

    @property
    def uses_dmd(self) -> bool:
        return any(w > 0 for w in self.dmd_weights)


_CONDITIONAL = {
    "lora_rank": lambda c: c.student == "lora",
    "lora_alpha": lambda c: c.student == "lora",
    "lora_targets": lambda c: c.student == "lora",
    "lpips_weights": lambda c: c.distill_loss == "lpips",
    "lpips_net": lambda c: c.distill_loss == "lpips",
    "timestep_var": lambda c: c.timestep_dist == "mixture",
    "adv_loss": lambda c: c.uses_disc,
    "disc_blocks": lambda c: c.uses_disc,
    "disc_t_levels": lambda c: c.uses_disc,
    "disc_hidden": lambda c: c.uses_disc,
    "disc_num_down": lambda c: c.uses_disc,
    "disc_optim": lambda c: c.uses_disc,
    "dmd_fake": lambda c: c.uses_dmd,
    "dmd_t_range": lambda c: c.uses_dmd,
    "proxy_optim": lambda c: c.uses_dmd and c.dmd_fake == "proxy",
}
_DEFAULTS = {f.name: getattr(FlashDiffusionConfig(), f.name) for f in fields(FlashDiffusionConfig)}
