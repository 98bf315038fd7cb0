"""What a checkpoint contains and how it is written and read back, on top of ``accelerate``.

Models, optimisers, the fp16 gradient scaler (and accelerate's own RNG copy) go through
``accelerator.save_state`` / ``load_state``, so DDP, FSDP and DeepSpeed sharding are handled by accelerate.
Added by us: ``trainer_state.pt`` (step, counters, model names in order, lr schedules, guard), ``rank_<i>.pt``
(every RNG incl. named generators, data positions and other tracked objects, per process),
``ema/<name>.safetensors``
and ``config.yaml`` (the resolved config, also copied into the manifest's metadata).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from .checkpoint import Checkpointer
from .ema import EMA
from .guard import NonFiniteGuard
from .rng import rng_state, set_rng_state
from .state import TrainState
from .updates import ModelSlot

__all__ = ["save_checkpoint", "load_checkpoint"]

logger = logging.getLogger("flashdistill.training")


def _ema_files(path: Path, emas: dict[str, EMA]) -> dict[str, Path]:
    return {name: path / "ema" / f"{name}.safetensors" for name in emas}


def save_checkpoint(
    accelerator: Accelerator,
    checkpointer: Checkpointer,
    state: TrainState,
    slots: dict[str, ModelSlot],
    emas: dict[str, EMA],
    guard: NonFiniteGuard,
    config_text: str | None = None,
) -> Path:
    """Collective: every process must call it at the same step. Returns the final checkpoint folder."""
    step = state.step
    if accelerator.is_main_process:
        checkpointer.begin(step)
    accelerator.wait_for_everyone()
    tmp = checkpointer.tmp_path_for(step)
    accelerator.save_state(str(tmp), safe_serialization=True)
    rank = accelerator.process_index
    torch.save(
        {"rng": rng_state(state.generators), "tracked": state.process_state()}, tmp / f"rank_{rank}.pt"
    )
    if accelerator.is_main_process:
        shared = {
            **state.shared_state(),
            "models": list(slots),
            "slots": {
                n: {"scheduler": s.scheduler.state_dict(), "updates": s.updates} for n, s in slots.items()
            },
            "emas": {n: {k: v for k, v in e.state_dict().items() if k != "shadow"} for n, e in emas.items()},
            "guard": guard.state_dict(),
            "num_processes": accelerator.num_processes,
        }
        torch.save(shared, tmp / "trainer_state.pt")
        for name, file in _ema_files(tmp, emas).items():
            file.parent.mkdir(exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in emas[name].shadow.items()}, str(file))
        if config_text is not None:
            (tmp / "config.yaml").write_text(config_text, encoding="utf-8")
    accelerator.wait_for_everyone()
    final = checkpointer.path_for(step)
    if accelerator.is_main_process:
        meta = {
            "step": step,
            "models": list(slots),
            "emas": list(emas),
            "config": config_text,
            "num_processes": accelerator.num_processes,
        }
        checkpointer.commit(step, meta)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator,
    path: str | Path,
    state: TrainState,
    slots: dict[str, ModelSlot],
    emas: dict[str, EMA],
    guard: NonFiniteGuard,
) -> None:
    """Restore all that :func:`save_checkpoint` wrote; the run must register the same models/EMAs/objects."""
    path = Path(path)
    shared = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    if shared["models"] != list(slots):
        raise ValueError(
            f"checkpoint {path} holds models {shared['models']} (in this order), "
            f"this run registers {list(slots)}"
        )
    if sorted(shared["emas"]) != sorted(emas):
        raise ValueError(
            f"checkpoint {path} holds EMAs {sorted(shared['emas'])}, this run has {sorted(emas)}"
        )
    rank = accelerator.process_index
    rank_file = path / f"rank_{rank}.pt"
    if not rank_file.is_file():
        raise ValueError(
            f"checkpoint {path} was written by {shared['num_processes']} process(es) and has no state "
            f"for process {rank}; resume with the same number of processes"
        )
    if shared["num_processes"] != accelerator.num_processes:
        logger.warning(
            "checkpoint %s was written by %d process(es), resuming with %d: the data order is kept, "
            "per-process random streams are not",
            path,
            shared["num_processes"],
            accelerator.num_processes,
        )
    accelerator.load_state(str(path))
    state.load_shared_state(shared)
    for name, slot in slots.items():
        slot.scheduler.load_state_dict(shared["slots"][name]["scheduler"])
        slot.updates = int(shared["slots"][name]["updates"])
        slot.pending, slot.bad_terms = 0, []
    for name, file in _ema_files(path, emas).items():
        device = next(iter(emas[name].shadow.values())).device
        emas[name].load_state_dict(
            {**shared["emas"][name], "shadow": load_file(str(file), device=str(device))}
        )
    guard.load_state_dict(shared["guard"])
    per_rank = torch.load(rank_file, map_location="cpu", weights_only=True)
    state.load_process_state(per_rank["tracked"])
    set_rng_state(per_rank["rng"], state.generators)  # last: nothing above may consume randomness after it
