"""Cached latents and text embeddings: sharded safetensors plus an ``index.json``, so that the VAE and the
text encoders need not be in memory while training.

Layout of a dataset folder::

    settings.json              how it was made (checked when an interrupted write is resumed)
    shard_00000.safetensors    samples [0, S), shard_00001 samples [S, 2S), ... each written atomically
    null.safetensors           optional: the unconditional conditioning (for CFG)
    index.json                 written last, once every shard exists: counts, per-sample shapes, metadata

Each shard holds tensors with the sample dimension first: ``latents (n, C, H, W)``, ``index (n,)`` (global
sample numbers) and the conditioning as ``cond.prompt_embeds (n, L, D)``, ``cond.pooled (n, P)``,
``cond.extra.*``; optionally ``noise`` and ``trajectory (n, K, C, H, W)``. The prompts are in the
safetensors metadata.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from ..fsio import atomic_replace
from ..types import Conditioning
from .errors import DataError, SettingsMismatch

__all__ = [
    "FORMAT",
    "shard_name",
    "write_shard",
    "read_shard_info",
    "write_index",
    "write_sharded",
    "check_settings",
    "LatentDataset",
]

FORMAT = "flashdistill.latents/1"


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.safetensors"


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    atomic_replace(tmp, path)


def write_shard(path: str | Path, tensors: dict[str, torch.Tensor], prompts: list[str]) -> Path:
    """Write one shard atomically (temp file, fsync, rename): it either exists complete or not at all."""
    path, n = Path(path), len(prompts)
    for name, t in tensors.items():
        if t.shape[0] != n:
            raise DataError(f"{path.name}: field '{name}' has {t.shape[0]} rows for {n} prompts")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    # one metadata entry: safetensors writes several in a per-process hash order, so shards would differ byte for
    # byte between two identical runs
    header = json.dumps({"format": FORMAT, "count": n, "prompts": prompts}, sort_keys=True)
    save_file(cpu, str(tmp), metadata={"flashdistill": header})
    atomic_replace(tmp, path)
    return path


def read_shard_info(path: str | Path) -> dict:
    """A shard's header (tensors unread): ``count``, ``fields`` (name -> per-sample shape, dtype), prompts."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            fields = {
                k: {"shape": list(f.get_slice(k).get_shape()[1:]), "dtype": f.get_slice(k).get_dtype()}
                for k in f.keys()
            }
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise DataError(f"unreadable shard {path}: {err}") from None
    if "flashdistill" in meta:  # current layout: one JSON entry
        try:
            meta = json.loads(meta["flashdistill"])
        except json.JSONDecodeError:
            raise DataError(f"{path}: unreadable shard header") from None
    elif "prompts" in meta:  # shards written before the one-entry header
        meta = {**meta, "prompts": json.loads(meta["prompts"])}
    if meta.get("format") != FORMAT:
        raise DataError(f"{path} is not a {FORMAT} shard")
    return {"count": int(meta["count"]), "fields": fields, "prompts": list(meta.get("prompts", []))}


def check_settings(root: Path, settings: dict) -> None:
    """Record ``settings`` in ``settings.json``, or check they equal the recorded ones (resuming a write)."""
    path = root / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            detail = "; ".join(f"{k}: was {old.get(k)!r}, now {settings.get(k)!r}" for k in diff)
            raise SettingsMismatch(
                f"{root} was started with different settings ({detail}); use the same settings to "
                "resume it or choose another output folder"
            )
    else:
        root.mkdir(parents=True, exist_ok=True)
        _atomic_json(path, settings)


def write_index(root: str | Path, num_shards: int, meta: dict | None = None) -> Path | None:
    """Write ``index.json`` if all ``num_shards`` shards exist and agree on fields; else return ``None``."""
    root = Path(root)
    files = [root / shard_name(i) for i in range(num_shards)]
    if not all(f.is_file() for f in files):
        return None
    infos = [read_shard_info(f) for f in files]
    fields = infos[0]["fields"]
    for f, info in zip(files, infos):
        if info["fields"] != fields:
            raise DataError(f"{f.name}: fields {info['fields']} differ from {files[0].name}: {fields}")
    index = {
        "format": FORMAT,
        "num_samples": sum(i["count"] for i in infos),
        "shards": [{"file": f.name, "count": i["count"]} for f, i in zip(files, infos)],
        "fields": fields,
        "meta": meta or {},
    }
    path = root / "index.json"
    _atomic_json(path, index)
    return path


def write_sharded(
    root: str | Path,
    num_samples: int,
    shard_size: int,
    produce: Callable[[int, int], tuple[dict[str, torch.Tensor], list[str]]],
    rank: int = 0,
    world_size: int = 1,
    meta: dict | None = None,
    progress=None,
) -> list[int]:
    """Write samples ``[0, num_samples)`` as shards of ``shard_size``; process ``rank`` takes every
    ``world_size``-th shard. Existing shards are kept (resume); returns the shards written now.
    ``produce(start, stop)`` returns the tensors and prompts of samples ``[start, stop)``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    num_shards = math.ceil(num_samples / shard_size)
    mine = [s for s in range(num_shards) if s % world_size == rank and not (root / shard_name(s)).is_file()]
    for s in progress(mine) if progress else mine:
        start, stop = s * shard_size, min(num_samples, (s + 1) * shard_size)
        tensors, prompts = produce(start, stop)
        tensors = {**tensors, "index": torch.arange(start, stop)}
        write_shard(root / shard_name(s), tensors, prompts)
    write_index(root, num_shards, meta)  # whichever process finishes last sees every shard
    return mine


class LatentDataset(Dataset):
    """Read a cached dataset. Items: ``latents`` and every other stored field (sample dimension dropped),
    ``cond`` (a :class:`Conditioning` with batch dimension 1), ``prompt`` and ``index``.

    Shards are memory-mapped and rows read on demand, so large datasets do not need to fit in memory.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index_path = self.root / "index.json"
        if not index_path.is_file():
            hint = (
                " (shards exist: the write did not finish; run it again to complete)"
                if any(self.root.glob("shard_*.safetensors"))
                else ""
            )
            raise DataError(f"no index.json in {self.root}: not a finished cached dataset{hint}")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT:
            raise DataError(f"{index_path}: unknown format {index.get('format')!r}")
        self.fields, self.meta = index["fields"], index.get("meta", {})
        self.shards, self.prompts, self.starts = [], [], []
        for entry in index["shards"]:
            path = self.root / entry["file"]
            if not path.is_file():
                raise DataError(f"{self.root}: shard {entry['file']} listed in index.json is missing")
            info = read_shard_info(path)
            if info["count"] != entry["count"] or info["fields"] != self.fields:
                raise DataError(
                    f"{path}: holds {info['count']} samples with fields {info['fields']}, "
                    f"index.json says {entry['count']} with {self.fields}"
                )
            self.starts.append(len(self.prompts))
            self.shards.append(path)
            self.prompts += info["prompts"]
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.prompts)

    def __getstate__(self) -> dict:  # DataLoader workers reopen the memory maps themselves
        return {**self.__dict__, "_handles": {}}

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.starts[mid] <= i else (lo, mid - 1)
        return lo, i - self.starts[lo]

    def __getitem__(self, i: int) -> dict:
        s, j = self._locate(i)
        if s not in self._handles:
            self._handles[s] = safe_open(str(self.shards[s]), framework="pt")
        f = self._handles[s]
        item: dict[str, Any] = {"prompt": self.prompts[i]}
        cond = {}
        for name in self.fields:
            row = f.get_slice(name)[j : j + 1]
            if name.startswith("cond."):
                cond[name[len("cond.") :]] = row
            else:
                item[name] = row[0]
        item["index"] = int(item["index"])
        if cond:
            item["cond"] = Conditioning.from_state(cond)
        return item

    def null_cond(self) -> Conditioning | None:
        """The stored unconditional conditioning (batch 1), if the writer saved one."""
        path = self.root / "null.safetensors"
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        return Conditioning.from_state(load_file(str(path)))
