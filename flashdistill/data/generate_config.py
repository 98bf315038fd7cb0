"""The settings of ``generate-data`` (:class:`GenerateConfig`), the teacher's time grid and what a resumed write
must agree on. The command itself is :mod:`flashdistill.data.generate`; the work is
:mod:`flashdistill.data.teacher_data`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, register_config

__all__ = ["GenerateConfig", "teacher_grid", "settings_of"]


@register_config("generate_data")
@dataclass
class GenerateConfig:
    """Settings of ``flashdistill generate-data`` (``null`` = take it from the teacher folder)."""

    out: str = ""  # output dataset folder (resumed if it exists with the same settings and teacher weights)
    prompts: str | None = None  # .jsonl (a "prompt" per line) or .txt prompt file: teacher samples
    images: str | None = None  # or: folder with captions.jsonl: encode these images instead of sampling
    model: str = (
        "sd3-nano"  # diffusers pipeline folder; "sd3-nano" = the shipped teacher; "tiny" = test model
    )
    num_steps: int | None = field(default=None, metadata={"min": 1})  # teacher Euler steps (before merging)
    guidance_scale: float | None = field(default=None, metadata={"min": 0.0})  # CFG scale (<= 1: no CFG)
    shift: float | None = field(
        default=None, metadata={"min": 0.01}
    )  # SD3 timestep shift of the teacher grid
    trajectory_grid: list[float] | None = None  # store x_t at these times (decreasing, in [0, 1])
    samples_per_prompt: int = field(default=1, metadata={"min": 1})  # images per prompt (different noise)
    limit: int | None = field(default=None, metadata={"min": 1})  # use only the first N prompts / images
    resolution: int | None = field(default=None, metadata={"min": 8})  # image side in pixels
    max_sequence_length: int | None = field(default=None, metadata={"min": 1})  # T5 tokens
    shard_size: int = field(default=64, metadata={"min": 1})  # samples per shard file
    batch_size: int = field(default=16, metadata={"min": 1})  # samples per teacher call
    seed: int = 0  # noise seed (sample k uses seed and k)
    save_images: bool = False  # also decode and write PNGs (+ images/captions.jsonl)
    device: str = "auto"  # "auto" (this process's GPU if any, else CPU), "cpu", "cuda:0", ...
    dtype: str = field(default="float32", metadata={"choices": ["float32", "bfloat16", "float16"]})

    def check_paths(self) -> None:
        """Inputs exist (checked when the command runs, not when a YAML is validated)."""
        for name in ("prompts", "images"):
            value = getattr(self, name)
            if value is not None and not Path(value).exists():
                raise ConfigError(f"'{name}': not found: {value}")

    def validate(self) -> None:
        if not self.out:
            raise ConfigError("'out' (the output folder) is required")
        if (self.prompts is None) == (self.images is None):
            raise ConfigError("give exactly one of 'prompts' (teacher samples) or 'images' (encode pairs)")
        if self.images is not None:
            keys = ("trajectory_grid", "num_steps", "guidance_scale", "shift")
            sampling = [k for k in keys if getattr(self, k) is not None]
            sampling += ["samples_per_prompt"] if self.samples_per_prompt != 1 else []
            if sampling:
                raise ConfigError(f"{', '.join(repr(k) for k in sampling)}: teacher sampling settings, but 'images' "
                                  "encodes given images without sampling; set them to null (or use 'prompts')")
        grid = self.trajectory_grid
        if grid is not None:
            if len(grid) < 2 or any(a <= b for a, b in zip(grid, grid[1:])) or min(grid) < 0 or max(grid) > 1:
                raise ConfigError(
                    f"'trajectory_grid' = {grid} must be at least two strictly decreasing times "
                    "in [0, 1], e.g. 1,0.75,0.5,0.25,0"
                )


def teacher_grid(num_steps: int, shift: float, student: list[float] | None = None):
    """The teacher's Euler grid: ``num_steps`` shifted steps from 1 to 0, refined so that it contains every
    time of ``student``. Returns ``(grid, positions)`` with ``grid[positions[i]] == student[i]``."""
    import torch

    from ..timesteps import student_grid

    base = student_grid(num_steps, shift=shift).tolist()
    times = sorted({round(float(t), 12) for t in base + list(student or [])}, reverse=True)
    grid = torch.tensor(times, dtype=torch.float64)
    positions = [times.index(round(float(t), 12)) for t in student or []]
    return grid, positions


def settings_of(cfg: GenerateConfig, resolved: dict) -> dict:
    """What must not change when an interrupted write is resumed."""
    keep = {
        k: v
        for k, v in json.loads(json.dumps(vars(cfg))).items()
        if k not in ("out", "batch_size", "device", "save_images")
    }
    return {**keep, **resolved}
