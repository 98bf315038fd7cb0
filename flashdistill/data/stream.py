"""An endless, resumable stream of batches whose order is a pure function of ``(seed, epoch, position)``.

Every epoch is a fresh permutation drawn from a generator seeded with ``(seed, epoch)``; global batch ``p`` of
that epoch is ``perm[p·B:(p+1)·B]`` and process ``r`` of ``k`` takes the ``r``-th contiguous ``B/k`` slice,
so one process and k processes see the same global batches. The state is just ``(epoch, position)``:
resuming jumps straight there without replaying (or re-reading) earlier batches. Incomplete last batches
are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .batch import collate as default_collate

__all__ = ["BatchStream", "epoch_permutation"]


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The sample order of ``epoch``: a permutation of ``range(n)`` depending only on (seed, epoch)."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63 - 1))
    return torch.randperm(n, generator=g, device="cpu")


class _BatchSampler:
    """Index lists of the remaining batches of one epoch (plain data: no reference back to the stream, so
    dropping the loader shuts its workers down at once)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchStream:
    """``next(stream)`` gives this process's next batch, forever (epochs roll over).

    ``batch_size`` is the *global* batch (summed over processes) and must divide by ``world_size``.
    ``num_workers > 0`` loads through a ``DataLoader`` (own generator, so the global RNG is never touched).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        collate: Callable[[list], Any] = default_collate,
        num_workers: int = 0,
    ):
        n = len(dataset)
        if batch_size % world_size:
            raise ValueError(
                f"global batch_size {batch_size} must be divisible by the {world_size} processes"
            )
        if n < batch_size:
            raise ValueError(f"the dataset has {n} samples, fewer than one batch of {batch_size}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.collate, self.num_workers = collate, num_workers
        self.batches_per_epoch = n // batch_size
        self.epoch, self.position = 0, 0
        self._iter: Iterator | None = None
        self._perm_cache: tuple[int, torch.Tensor] | None = None

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def indices(self, epoch: int, position: int) -> list[int]:
        """Dataset indices of this process's share of global batch ``position`` in ``epoch``."""
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            self._perm_cache = (epoch, epoch_permutation(len(self.dataset), self.seed, epoch, self.shuffle))
        perm = self._perm_cache[1]
        lo = position * self.batch_size + self.rank * self.local_batch_size
        return perm[lo : lo + self.local_batch_size].tolist()

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iter = self.epoch + 1, 0, None
        if self.num_workers == 0:
            batch = self.collate([self.dataset[i] for i in self.indices(self.epoch, self.position)])
        else:
            if self._iter is None:
                remaining = [self.indices(self.epoch, p) for p in range(self.position, self.batches_per_epoch)]
                loader = DataLoader(
                    self.dataset,
                    batch_sampler=_BatchSampler(remaining),
                    num_workers=self.num_workers,
                    collate_fn=self.collate,
                    generator=torch.Generator().manual_seed(self.seed),
                )
                self._iter = iter(loader)
            batch = next(self._iter)
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_samples": len(self.dataset),
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size", "num_samples"):
            mine = self.state_dict()[key]
            if state.get(key, mine) != mine:
                raise ValueError(
                    f"data stream {key} changed since the checkpoint ({state[key]} -> {mine}); "
                    "resuming would not continue the same sample order"
                )
        self.epoch, self.position, self._iter = int(state["epoch"]), int(state["position"]), None
