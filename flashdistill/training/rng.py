"""Capture and restore every random-number generator a training process uses, in a form that loads with
``torch.load(weights_only=True)``: Python's ``random``, NumPy's global state, torch's CPU and CUDA generators,
and any named ``torch.Generator`` objects the job owns (data augmentation, noise, head refresh...)."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict:
    """Snapshot of the global generators plus ``generators`` (tensors, ints and tuples only)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore a snapshot from :func:`rng_state`; named generators must match the saved names."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    generators = generators or {}
    if set(saved) != set(generators):
        raise ValueError(
            f"checkpoint has generators {sorted(saved)}, this run registers {sorted(generators)}"
        )
    for k, g in generators.items():
        g.set_state(saved[k])
