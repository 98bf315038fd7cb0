"""Training infrastructure on Hugging Face ``accelerate``: configs, a thin ``Run`` coordinator, atomic
checkpoints with exact resume, EMA, non-finite guard, progress/metrics. Only this package and the recipes
import ``accelerate``."""

from .accel import enable_gradient_checkpointing, make_accelerator
from .checkpoint import Checkpointer
from .configs import AccelerateConfig, CheckpointConfig, LogConfig, OptimConfig, TrainConfig
from .ema import EMA, decay_from_half_life
from .guard import NonFiniteError, NonFiniteGuard
from .optim import build_adamw, build_schedule
from .persist import load_checkpoint, save_checkpoint
from .progress import Progress, save_image_grid
from .rng import rng_state, seed_everything, set_rng_state
from .run import Run
from .state import TrainState
from .updates import ModelSlot, backward, frozen, optimizer_step

__all__ = [
    "AccelerateConfig",
    "CheckpointConfig",
    "LogConfig",
    "OptimConfig",
    "TrainConfig",
    "Run",
    "ModelSlot",
    "TrainState",
    "Checkpointer",
    "EMA",
    "NonFiniteGuard",
    "NonFiniteError",
    "Progress",
    "backward",
    "optimizer_step",
    "frozen",
    "save_checkpoint",
    "load_checkpoint",
    "make_accelerator",
    "enable_gradient_checkpointing",
    "build_adamw",
    "build_schedule",
    "decay_from_half_life",
    "save_image_grid",
    "rng_state",
    "set_rng_state",
    "seed_everything",
]
