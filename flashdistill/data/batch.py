"""Batching helpers: ``collate`` (with errors that name the mismatched item) and ``split_batch``
(micro-batches for gradient accumulation). A batch is a tensor, a :class:`Conditioning`, a list of strings,
or a dict/tuple of those, with the batch dimension first."""

from __future__ import annotations

from typing import Any

import torch

from ..types import Conditioning

__all__ = ["collate", "split_batch", "batch_size_of"]


def _item_name(items: list, i: int) -> str:
    item = items[i]
    if isinstance(item, dict):
        for key in ("file", "name", "index"):
            if key in item:
                return f"item {i} ({key}={item[key]!r})"
    return f"item {i}"


def collate(items: list[Any], _key: str = "", _names: list[str] | None = None) -> Any:
    """Stack a list of samples into a batch; mismatched shapes raise ``ValueError`` naming the items."""
    if not items:
        raise ValueError("cannot collate an empty list of samples")
    first = items[0]
    where = f" field '{_key}'" if _key else ""
    if isinstance(first, torch.Tensor):
        for i, t in enumerate(items):
            if not isinstance(t, torch.Tensor) or t.shape != first.shape:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"cannot batch{where}: {_names[i] if _names else _item_name(items, i)} has shape {shape}, "
                    f"item 0 has {tuple(first.shape)}"
                )
        return torch.stack(items)
    if isinstance(first, Conditioning):
        return Conditioning.cat(items)  # per-sample conditionings keep a batch dimension of 1
    if isinstance(first, dict):
        out = {}
        for key in first:
            missing = [i for i, it in enumerate(items) if key not in it]
            if missing:
                raise ValueError(f"cannot batch: {_item_name(items, missing[0])} has no field '{key}'")
            names = _names or [_item_name(items, i) for i in range(len(items))]
            out[key] = collate([it[key] for it in items], f"{_key}.{key}" if _key else key, names)
        return out
    if isinstance(first, tuple):
        return tuple(collate(list(col), f"{_key}[{j}]", _names) for j, col in enumerate(zip(*items)))
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return torch.tensor(items)
    return list(items)


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch (first tensor / Conditioning / list found)."""
    if isinstance(batch, (torch.Tensor, Conditioning, list)):
        return len(batch)
    if isinstance(batch, dict):
        return batch_size_of(next(iter(batch.values())))
    if isinstance(batch, tuple):
        return batch_size_of(batch[0])
    raise TypeError(f"cannot find the batch size of {type(batch).__name__}")


def _take(batch: Any, sl: slice) -> Any:
    if isinstance(batch, (torch.Tensor, Conditioning, list)):
        return batch[sl]
    if isinstance(batch, dict):
        return {k: _take(v, sl) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_take(v, sl) for v in batch)
    return batch  # scalars and other non-batched values are shared by every micro-batch


def split_batch(batch: Any, num: int) -> list[Any]:
    """Split along the batch dimension into ``num`` contiguous micro-batches (sizes differ by at most 1)."""
    n = batch_size_of(batch)
    if not 1 <= num <= n:
        raise ValueError(f"cannot split a batch of {n} into {num} micro-batches")
    bounds = [round(i * n / num) for i in range(num + 1)]
    return [_take(batch, slice(bounds[i], bounds[i + 1])) for i in range(num)]
