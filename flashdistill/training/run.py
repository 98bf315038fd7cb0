"""``Run``: the few things every training job shares, wired together; the loop itself stays in the recipe.

    run = Run(cfg.train, config=cfg)                       # accelerator, run folder, config.yaml, seeds
    student = run.add_model("student", net, cfg.student_optim)
    run.add_ema("student_ema", of="student", decay=0.999)
    teacher = run.add_frozen("teacher", teacher_net)
    data = run.data_stream("train", dataset, batch_size=cfg.batch_size)
    run.on_samples(lambda step: make_grid_images(...))    # optional PNG grids
    for step in run.steps():                               # resumes itself; checkpoints/logs after each step
        batch = next(data)
        loss = ...                                          # plain PyTorch with student.model, teacher, ...
        run.update("student", {"mse": loss.mean()})        # backward, clip, guard, AdamW, lr, EMA
        run.log(extra_metric=...)

Everything ``Run`` does is a call into a small piece usable on its own: :class:`Checkpointer`,
:func:`save_checkpoint`/:func:`load_checkpoint`, :func:`backward`/:func:`optimizer_step`, :class:`EMA`,
:class:`NonFiniteGuard`, :class:`Progress`, :class:`TrainState`, :class:`BatchStream`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType, broadcast_object_list
from torch import nn

from ..config import ConfigError, dump_config
from ..data.batch import batch_size_of, split_batch
from ..data.stream import BatchStream
from ..fsio import FolderInUse, FolderLock
from .accel import enable_gradient_checkpointing, make_accelerator
from .checkpoint import Checkpointer, atomic_write_text
from .configs import OptimConfig, TrainConfig
from .draws import GlobalDraws
from .ema import EMA
from .guard import NonFiniteGuard
from .optim import build_adamw, build_schedule
from .persist import load_checkpoint, save_checkpoint
from .progress import Progress, save_image_grid
from .rng import rng_state, seed_everything, set_rng_state
from .state import TrainState
from .updates import ModelSlot, backward, optimizer_step

__all__ = ["Run"]

logger = logging.getLogger("flashdistill.training")


class Run:
    """One training job. ``cfg`` is the shared :class:`TrainConfig`; ``config`` the full recipe config whose
    resolved YAML is written to ``<run_dir>/config.yaml`` and into every checkpoint."""

    def __init__(self, cfg: TrainConfig, config: Any = None):
        self.cfg = cfg
        self.config_text = dump_config(config if config is not None else cfg)
        self.run_dir = Path(cfg.run_dir)
        self.checkpointer = Checkpointer(
            self.run_dir / "checkpoints", cfg.checkpoint.keep_last, cfg.checkpoint.checksums
        )
        self.accelerator = make_accelerator(cfg.accelerate)
        self.rank, self.world_size = self.accelerator.process_index, self.accelerator.num_processes
        self.device = self.accelerator.device
        self._lock = FolderLock(self.run_dir)
        if self.is_main:  # one writer per run folder: a second job on it is refused before it touches anything
            try:
                self._lock.acquire()
            except FolderInUse as err:
                raise ConfigError(f"train.run_dir: {err}") from None
        self._check_run_dir()
        seed_everything(cfg.seed + self.rank)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if cfg.overwrite and not (cfg.resume or cfg.resume_from):
                shutil.rmtree(self.checkpointer.root, ignore_errors=True)
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", self.config_text)
        self.state = TrainState()
        self.guard = NonFiniteGuard(cfg.max_nonfinite)
        self.slots: dict[str, ModelSlot] = {}
        self.emas: dict[str, EMA] = {}
        self.frozen: dict[str, nn.Module] = {}
        self.progress: Progress | None = None
        self.resumed_from: Path | None = None
        self._logs: dict[str, float] = {}
        self._sampler: Callable[[int], Any] | None = None
        self._last_saved = -1

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def step(self) -> int:
        """The step being run (inside the loop body) = completed steps + 1."""
        return self.state.step + 1

    def _check_run_dir(self) -> None:
        cfg = self.cfg
        if cfg.resume_from is not None and not Path(cfg.resume_from).is_dir():
            raise ConfigError(f"train.resume_from: checkpoint folder not found: {cfg.resume_from}")
        if self.checkpointer.all() and not (cfg.resume or cfg.resume_from or cfg.overwrite):
            raise ConfigError(
                f"{self.run_dir} already has checkpoints; pass train.resume=true to continue it, "
                "train.overwrite=true to start afresh, or choose another train.run_dir"
            )

    # ------------------------------------------------------------------------------------------ building
    def add_model(
        self,
        name: str,
        module: nn.Module,
        optim: OptimConfig,
        *,
        parameters=None,
        gradient_checkpointing: bool | None = None,
        max_updates: int | None = None,
    ) -> ModelSlot:
        """Register a trained model with its own AdamW (``parameters`` defaults to all trainable ones).

        ``gradient_checkpointing``: ``True`` requires support, ``None`` follows ``train.gradient_checkpointing``
        (applied where supported). Models are prepared by accelerate in registration order (DDP/FSDP
        wrapping, device, precision); register the same models in the same order when resuming.
        ``max_updates`` sizes the lr schedule by this model's own optimiser steps (default ``train.max_steps``):
        a model updated every k-th iteration takes ``ceil(max_steps / k)`` of them.
        """
        if name in self.slots or name in self.frozen:
            raise ValueError(f"a model named '{name}' is already registered")
        if gradient_checkpointing:  # asked for this model: it must support it
            enable_gradient_checkpointing(module)
        elif gradient_checkpointing is None and self.cfg.gradient_checkpointing:  # job-wide: where supported
            try:
                enable_gradient_checkpointing(module)
            except ValueError:
                logger.info("gradient checkpointing: '%s' has no support for it, left as is", name)
        module.train()
        optimizer = build_adamw(parameters if parameters is not None else module.parameters(), optim)
        scheduler = build_schedule(optimizer, optim, max_updates or self.cfg.max_steps)
        model, optimizer = self.accelerator.prepare(module, optimizer)
        slot = ModelSlot(
            name, model, self.accelerator.unwrap_model(model), optimizer, scheduler, optim.max_grad_norm
        )
        self.slots[name] = slot
        return slot

    def add_frozen(self, name: str, module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
        """A fixed network (teacher, encoders): no gradients, eval mode, on this device, not saved."""
        if name in self.slots or name in self.frozen:
            raise ValueError(f"a model named '{name}' is already registered")
        module.requires_grad_(False).eval().to(device=self.device, dtype=dtype)
        self.frozen[name] = module
        return module

    def add_ema(
        self,
        name: str,
        of: str,
        decay: float | None = None,
        half_life: float | None = None,
        warmup: bool = False,
    ) -> EMA:
        """Track an EMA of trained model ``of``, updated after each successful step of it; checkpointed."""
        if of not in self.slots:
            raise ValueError(f"add_ema('{name}'): no trained model named '{of}' (have {list(self.slots)})")
        if self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise NotImplementedError("EMA needs full parameters on every process; use DDP for EMA students")
        ema = EMA(self.slots[of].module, decay=decay, half_life=half_life, warmup=warmup)
        self.slots[of].emas.append(ema)
        self.emas[name] = ema
        return ema

    def track(self, name: str, obj: Any) -> Any:
        """Checkpoint any object with ``state_dict``/``load_state_dict`` (per process)."""
        return self.state.track(name, obj)

    def generator(self, name: str, seed: int | None = None, per_process: bool = True) -> torch.Generator:
        """A checkpointed ``torch.Generator`` on this device (per process unless ``per_process=False``)."""
        seed = self.cfg.seed if seed is None else seed
        return self.state.generator(name, seed + (1_000_003 * self.rank if per_process else 0), self.device)

    def draws(self, name: str, seed: int | None = None) -> GlobalDraws:
        """Per-sample draws of the global batch from a generator every process shares (see :class:`GlobalDraws`):
        N processes then draw what 1 process draws, and every shared decision agrees across ranks."""
        return GlobalDraws(self.generator(name, seed, per_process=False), self.rank, self.world_size)

    def data_stream(self, name: str, dataset, batch_size: int, **kwargs) -> BatchStream:
        """A checkpointed :class:`BatchStream` of this process's share of global batches of ``batch_size``."""
        stream = BatchStream(
            dataset, batch_size, seed=self.cfg.seed, rank=self.rank, world_size=self.world_size, **kwargs
        )
        return self.track(name, stream)

    def on_samples(self, fn: Callable[[int], Any]) -> None:
        """``fn(step)`` returns images ``(N, 3, H, W)`` in [0, 1] (or PIL images); called on all processes
        every ``log.samples_every`` steps without disturbing the training RNG; the main process saves PNGs."""
        self._sampler = fn

    # ------------------------------------------------------------------------------------------ running
    def start(self) -> int:
        """Resume if configured (latest valid checkpoint, or ``resume_from``), open the logs; returns the
        number of completed steps. Call after registering everything; :meth:`steps` calls it for you."""
        if self.progress is not None:
            return self.state.step
        path = None
        if self.cfg.resume_from:
            path = Path(self.cfg.resume_from)
            issue = self.checkpointer.problem(path) if self.is_main else None
            if issue:
                raise ValueError(f"train.resume_from {path} is not a valid checkpoint: {issue}")
        elif self.cfg.resume:
            found = [str(p) if (p := self.checkpointer.latest_valid()) else None] if self.is_main else [None]
            if self.world_size > 1:
                broadcast_object_list(found)
            path = Path(found[0]) if found[0] else None
            if path is None:
                logger.info(
                    "train.resume: no valid checkpoint in %s, starting from step 0", self.checkpointer.root
                )
        if path is not None:
            load_checkpoint(self.accelerator, path, self.state, self.slots, self.emas, self.guard)
            self.resumed_from, self._last_saved = path, self.state.step
            logger.info("resumed from %s at step %d", path, self.state.step)
        log = self.cfg.log
        self.progress = Progress(
            self.run_dir,
            self.cfg.max_steps,
            self.state.step,
            enabled=self.is_main,
            bar=log.progress_bar,
            tensorboard=log.tensorboard,
        )
        return self.state.step

    def steps(self) -> Iterator[int]:
        """Yield step numbers up to ``max_steps``; after each body: logs, sample grid, checkpoint (and a final
        checkpoint at the last step). Stop early with ``break`` only if you save yourself (:meth:`save`)."""
        start = self.start()
        for step in range(start + 1, self.cfg.max_steps + 1):
            yield step
            self.end_step()
        self.finish()

    def end_step(self) -> None:
        """Mark the current step complete and do what is due (for hand-written loops, not :meth:`steps`)."""
        self.state.step += 1
        step, cfg = self.state.step, self.cfg
        last = step == cfg.max_steps
        if step % cfg.log.every == 0 or last:
            self._write_logs(step)
        self._logs = {}
        if (
            self._sampler is not None
            and cfg.log.samples_every
            and (step % cfg.log.samples_every == 0 or last)
        ):
            self.write_samples(step)
        if step % cfg.checkpoint.every == 0 or last:
            self.save()
        if self.progress is not None:
            self.progress.advance(step)

    def update(self, name: str, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        """One optimiser step of model ``name`` on the scalar loss ``Σ terms``; values are logged."""
        slot = self.slots[name]
        values = backward(self.accelerator, slot, terms)
        logs = optimizer_step(self.accelerator, slot, self.guard, self.step)
        self._record(name, values, logs)
        return {**values, **logs}

    def update_accumulated(
        self,
        name: str,
        compute: Callable[[Any], dict[str, torch.Tensor]],
        batch: Any,
        num_micro: int | None = None,
    ) -> dict[str, float]:
        """One optimiser step of ``name`` accumulated over micro-batches of ``batch``.

        ``compute(micro_batch)`` returns scalar terms that are *means* over the micro-batch, weighted by
        micro-batch size, so the gradient equals that of ``compute(batch)`` (up to float rounding).
        ``num_micro`` defaults to ``train.gradient_accumulation``.
        """
        slot, k = self.slots[name], num_micro or self.cfg.gradient_accumulation
        n = batch_size_of(batch)
        if k > n:
            raise ConfigError(f"train.gradient_accumulation = {k}: this process's batch of {n} cannot make {k} "
                              "micro-batches (raise batch_size or lower the accumulation)")
        micro = split_batch(batch, k)
        totals: dict[str, torch.Tensor] = {}
        for i, mb in enumerate(micro):
            w = batch_size_of(mb) / n
            values = backward(self.accelerator, slot, compute(mb), scale=w, sync=i == len(micro) - 1)
            for key, v in values.items():
                totals[key] = totals.get(key, 0.0) + w * v
        logs = optimizer_step(self.accelerator, slot, self.guard, self.step)
        self._record(name, totals, logs)
        return {**totals, **logs}

    def _record(self, name: str, values: dict, logs: dict[str, float]) -> None:
        for key, v in values.items():
            self._logs[f"{name}/{key}" if key in self._logs else key] = v
        self._logs.update(logs)

    def log(self, **values: float | torch.Tensor) -> None:
        """Add scalar values to this step's metrics row (every process must log the same keys). Tensors are
        kept detached on their device and converted once per written row (one sync, not one per value)."""
        for key, v in values.items():
            self._logs[key] = v.detach().float().mean() if isinstance(v, torch.Tensor) else float(v)

    def _write_logs(self, step: int) -> None:
        keys = sorted(self._logs)
        if not keys:
            return
        values = torch.stack([torch.as_tensor(self._logs[k], dtype=torch.float64, device=self.device).reshape(())
                              for k in keys])
        if self.world_size > 1:
            values = self.accelerator.reduce(values, reduction="mean")
        if self.progress is not None:
            self.progress.write(step, dict(zip(keys, values.tolist())))

    @torch.no_grad()
    def write_samples(self, step: int) -> Path | None:
        """Call the sample callback (RNG state preserved) and write ``samples/step_XXXXXXXX.png``."""
        saved = rng_state(self.state.generators)
        try:
            images = self._sampler(step)
        finally:
            set_rng_state(saved, self.state.generators)
        if self.is_main and images is not None:
            return save_image_grid(images, self.run_dir / "samples" / f"step_{step:08d}.png")
        return None

    def save(self) -> Path:
        """Write a checkpoint of the completed steps now (collective: every process must call it)."""
        path = save_checkpoint(
            self.accelerator,
            self.checkpointer,
            self.state,
            self.slots,
            self.emas,
            self.guard,
            self.config_text,
        )
        self._last_saved = self.state.step
        return path

    def finish(self) -> None:
        """Save if the last completed step is not checkpointed yet, close the logs, wait for all processes."""
        if self._last_saved != self.state.step and self.state.step > 0:
            self.save()
        if self.progress is not None:
            self.progress.close()
        self.accelerator.wait_for_everyone()
        self._lock.release()
