"""Pieces every distillation recipe builds the same way: the teacher pipeline, student copies, the dataset,
the student's backward simulation, and saving a student folder that stock diffusers runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from ..sampling import as_grid, euler_solve, renoise_update
from ..types import Conditioning

__all__ = ["load_teacher_pipeline", "copy_transformer", "load_student_transformer", "open_dataset",
           "trajectory_index", "backward_simulate", "save_student"]


def load_teacher_pipeline(name: str, dtype: torch.dtype = torch.float32, kinds: tuple[str, ...] = ("sd3",)):
    """``(pipe, settings)`` for ``"sd3-nano"`` (shipped), ``"tiny"`` (tests) or a pipeline folder of ``kinds``."""
    from ..data.teacher_data import load_teacher

    return load_teacher(name, dtype, kinds)


def copy_transformer(transformer: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
    """An independent copy of a transformer (student or proxy start from the teacher's weights)."""
    new = copy.deepcopy(transformer)
    new.requires_grad_(trainable)
    return new.train(trainable)


def load_student_transformer(folder: str | Path, like: torch.nn.Module) -> torch.nn.Module:
    """The transformer of an earlier stage's student folder (``folder/transformer``), on ``like``'s dtype."""
    from diffusers import SD3Transformer2DModel

    path = Path(folder) / "transformer"
    if not (path / "config.json").is_file():
        raise ConfigError(f"init_student: no transformer folder at {path} (expected a student folder "
                                "written by an earlier `flashdistill distill` stage)")
    dtype = next(like.parameters()).dtype
    return SD3Transformer2DModel.from_pretrained(path, dtype=dtype).train()


def open_dataset(path: str, need_trajectory: bool = False, teacher_pipe=None, teacher: str = ""):
    """A ``generate-data`` folder as a :class:`LatentDataset` with its null conditioning checked, and (given the
    teacher pipeline) made by that teacher: latents of another teacher's VAE or samples of another denoiser would
    train the student toward the wrong model without any error."""
    from ..data.cache import LatentDataset
    from ..data.teacher_data import weights_fingerprint

    if not path:
        raise ConfigError("data: give the folder written by `flashdistill generate-data`")
    ds = LatentDataset(path)
    made_by = ds.meta.get("model_weights")
    if teacher_pipe is not None and made_by and made_by != weights_fingerprint(teacher_pipe):
        raise DataError(f"data {path}: made by another teacher (weights {made_by}, recorded by generate-data from "
                        f"{ds.meta.get('model')!r}) than teacher {teacher!r}; regenerate it with "
                        f"`flashdistill generate-data --model {teacher}`")
    if need_trajectory and "trajectory" not in ds.fields:
        raise DataError(f"data {path}: has no stored trajectory; regenerate it with "
                         "`flashdistill generate-data ... trajectory_grid=[1,0.75,0.5,0.25,0]`")
    if ds.null_cond() is None:
        raise DataError(f"data {path}: no null.safetensors (the unconditional embedding for CFG)")
    return ds


def trajectory_index(stored_grid: list[float], grid: torch.Tensor) -> list[int]:
    """Positions of the student grid's times inside a dataset's stored trajectory grid."""
    out = []
    for t in grid.tolist():
        hits = [k for k, s in enumerate(stored_grid) if abs(s - t) < 1e-6]
        if not hits:
            raise DataError(f"student time {t} is not in the dataset's trajectory grid {stored_grid}; "
                             "regenerate the data with the student grid as trajectory_grid")
        out.append(hits[0])
    return out


@torch.no_grad()
def teacher_points(teacher, noise: torch.Tensor, teacher_grid: torch.Tensor, positions: list[int],
                   cond: Conditioning) -> torch.Tensor:
    """Solve the (CFG-wrapped) teacher's ODE from ``noise`` on ``teacher_grid`` and return its states at the
    grid ``positions`` (the student-grid times), ``(B, len(positions), C, H, W)`` — stage 1's trajectories
    computed on the fly, the same numbers ``generate-data`` stores for the same noise."""
    _, states = euler_solve(teacher, noise, teacher_grid, cond, return_trajectory=True)
    return torch.stack([states[p] for p in positions], dim=1)


@torch.no_grad()
def backward_simulate(student, noise: torch.Tensor, grid: torch.Tensor, stop, cond: Conditioning,
                      renoise: torch.Tensor | None = None) -> torch.Tensor:
    """Run the student (no gradients) from ``grid[0]`` down to ``grid[stop]`` and return that point.

    ``stop`` is one grid index for the whole batch or a ``(B,)`` tensor of per-sample indices: each sample then
    follows the grid to its own index and stands still after it (zero-length steps). ``renoise`` ``(B, K, ...)``
    runs the stochastic sampler: step ``j`` puts its x0 estimate back on the path at ``grid[j + 1]`` with
    ``renoise[:, j]`` instead of taking the Euler jump. The noisier warm-up is the caller's choice of ``stop``.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    step = None if renoise is None else renoise_update(lambda j, x: renoise[:, j])
    if not torch.is_tensor(stop):
        return euler_solve(student, noise, grid[: int(stop) + 1], cond, step=step) if int(stop) > 0 else noise
    stop = stop.to("cpu", torch.long)
    last = int(stop.max())
    if last == 0:
        return noise
    cols = torch.minimum(torch.arange(last + 1)[None, :], stop[:, None])  # (B, last + 1)
    return euler_solve(student, noise, grid.cpu()[cols], cond, step=step)


def save_student(pipe, transformer: torch.nn.Module, out: str | Path, timesteps, settings: dict | None = None,
                 scheduler: dict | None = None):
    """Write a diffusers pipeline folder running ``transformer`` on ``timesteps`` with stock diffusers.

    The scheduler is ``FlowMatchEulerDiscreteScheduler`` with ``shift=1.0`` (so the given sigmas are used
    unchanged); ``flashdistill.json`` records the sigmas, guidance 1 (no CFG) and the T5 token length, which
    ``flashdistill sample`` applies. Stock use: ``pipe(prompt, sigmas=..., guidance_scale=1.0,
    max_sequence_length=...)``.
    """
    from diffusers import StableDiffusion3Pipeline

    from ..sampling import sigmas_for_pipeline

    grid = as_grid(timesteps, dtype=torch.float64)
    scheduler = pipe.scheduler.from_config(pipe.scheduler.config, **{"shift": 1.0, **(scheduler or {})})
    components = {**pipe.components, "transformer": transformer, "scheduler": scheduler}
    student_pipe = StableDiffusion3Pipeline(**components)
    out = Path(out)
    student_pipe.save_pretrained(out)
    info = {"kind": "student", "sigmas": sigmas_for_pipeline(grid.tolist()), "guidance_scale": 1.0,
            "num_inference_steps": len(grid) - 1, **(settings or {})}
    (out / "flashdistill.json").write_text(json.dumps(info, indent=2) + "\n")
    from ..pipelines.model_card import write_model_card

    student_pipe.set_progress_bar_config(disable=True)
    write_model_card(out, pipe=student_pipe)  # README.md (Hugging Face format) + sample.png
    return out
