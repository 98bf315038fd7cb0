"""Config sections every training job shares; recipes embed them in their own registered config.

A recipe config typically looks like::

    @register_config("my_recipe")
    @dataclass
    class MyRecipeConfig:
        train: TrainConfig = field(default_factory=TrainConfig)        # run folder, steps, checkpoints, logs
        student_optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW for the student
        proxy_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError

__all__ = ["AccelerateConfig", "OptimConfig", "CheckpointConfig", "LogConfig", "TrainConfig"]


@dataclass
class AccelerateConfig:
    """Passed to ``accelerate.Accelerator``; the process layout itself comes from ``accelerate launch``."""

    # "no" (fp32), "bf16" or "fp16" autocast; fp16 adds a gradient scaler
    mixed_precision: str = field(default="no", metadata={"choices": ["no", "bf16", "fp16"]})
    # DDP: allow parameters that get no gradient in a step (slower; needed if a forward skips layers)
    find_unused_parameters: bool = False
    # force CPU even when a GPU is present (tests, debugging)
    cpu: bool = False


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule for one trained model."""

    lr: float = field(default=1e-4, metadata={"min": 0.0})  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (beta1, beta2)
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})  # decoupled weight decay
    eps: float = field(default=1e-8, metadata={"min": 0.0})  # AdamW epsilon
    warmup_steps: int = field(default=0, metadata={"min": 0})  # linear warm-up from 0 over this many updates
    # "constant" after warm-up, or "cosine" decay to 0 at train.max_steps
    schedule: str = field(default="constant", metadata={"choices": ["constant", "cosine"]})
    max_grad_norm: float | None = field(default=1.0, metadata={"min": 0.0})  # clip gradients; null = no clip

    def validate(self) -> None:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas = {list(self.betas)} must both lie in [0, 1)")


@dataclass
class CheckpointConfig:
    """When and how checkpoints are written to ``<run_dir>/checkpoints/step_XXXXXXXX``."""

    every: int = field(default=500, metadata={"min": 1})  # save every N steps (and always at the last step)
    keep_last: int = field(default=3, metadata={"min": 1})  # keep this many most recent valid checkpoints
    checksums: bool = True  # sha256 every file in the manifest (verified on resume)


@dataclass
class LogConfig:
    """Progress bar, ``metrics.jsonl``, TensorBoard and sample grids."""

    every: int = field(default=10, metadata={"min": 1})  # write a metrics row every N steps
    samples_every: int = field(default=0, metadata={"min": 0})  # PNG sample grid every N steps (0 = never)
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed
    progress_bar: bool = True  # tqdm bar on the main process


@dataclass
class TrainConfig:
    """The trainer: run folder, length, seed, resume, guards, accumulation, checkpoints and logs."""

    run_dir: str = (
        "runs/default"  # everything of the run goes here (config.yaml, checkpoints, metrics, samples)
    )
    max_steps: int = field(default=1000, metadata={"min": 1})  # total optimisation steps
    seed: int = 0  # base seed (each process adds its rank for its own noise)
    resume: bool = False  # continue from the latest valid checkpoint in run_dir (fresh start if none)
    resume_from: str | None = None  # or continue from this checkpoint folder
    overwrite: bool = False  # allow starting afresh in a run_dir that already has checkpoints
    gradient_accumulation: int = field(default=1, metadata={"min": 1})  # micro-batches per optimiser step
    gradient_checkpointing: bool = False  # trade compute for memory in models that support it
    max_nonfinite: int = field(
        default=5, metadata={"min": 1}
    )  # stop after this many non-finite updates in a row
    accelerate: AccelerateConfig = field(default_factory=AccelerateConfig)  # accelerate.Accelerator settings
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)  # checkpoint cadence and retention
    log: LogConfig = field(default_factory=LogConfig)  # logging cadence and sinks

    def validate(self) -> None:
        if self.resume and self.resume_from:
            raise ConfigError("set either resume (latest checkpoint) or resume_from (a given one), not both")
