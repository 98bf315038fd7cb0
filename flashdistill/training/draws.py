"""Random draws for the *global* batch, so that N processes see what 1 process sees.

Each process holds ``B/N`` samples of a global batch of ``B`` (the ``r``-th contiguous slice, as
:class:`~flashdistill.data.stream.BatchStream` hands them out). :class:`GlobalDraws` draws every per-sample random
tensor for the whole global batch from a generator that *every process shares* (same seed, same sequence of calls)
and returns this process's slice. Consequences:

* every process makes the same draws in the same order, so a shared decision (which student step to train, which
  discriminator head to refresh) is the same everywhere and every rank runs the same collectives;
* 2 processes with half the batch each get exactly the noises and timesteps that 1 process gets for the whole
  batch, so their averaged gradients equal the 1-process gradients up to float summation order (the multi-process
  recipe tests check this).

Draws happen on the generator's device (a CUDA generator only fills CUDA tensors). The cost is drawing ``N`` times
more random numbers than a process needs, which is negligible beside a forward pass.
"""

from __future__ import annotations

import torch

__all__ = ["GlobalDraws"]


class GlobalDraws:
    """Per-sample draws sliced from global-batch draws of a shared ``generator``.

    Args:
        generator: shared by all processes (same seed), checkpointed by the caller.
        rank, world_size: this process and how many there are.
    """

    def __init__(self, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must lie in [0, {world_size})")
        self.generator, self.rank, self.world_size = generator, rank, world_size

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def _global(self, shape, batch_dim: int) -> tuple[list[int], int]:
        shape = list(shape)
        local = shape[batch_dim]
        shape[batch_dim] = local * self.world_size
        return shape, local

    def _slice(self, full: torch.Tensor, local: int, batch_dim: int) -> torch.Tensor:
        return full.narrow(batch_dim, self.rank * local, local)

    def randn(self, shape, batch_dim: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``shape`` (this process's share along ``batch_dim``)."""
        full, local = self._global(shape, batch_dim)
        x = torch.randn(full, generator=self.generator, device=self.device, dtype=dtype)
        return self._slice(x, local, batch_dim)

    def rand(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``U[0, 1)`` of shape ``(n,)`` (this process's ``n`` of the global ``n·N``)."""
        full, local = self._global((n,), 0)
        return self._slice(torch.rand(full, generator=self.generator, device=self.device, dtype=dtype), local, 0)

    def randint(self, high: int, n: int) -> torch.Tensor:
        """Integers in ``[0, high)`` of shape ``(n,)`` (this process's share)."""
        full, local = self._global((n,), 0)
        x = torch.randint(high, full, generator=self.generator, device=self.device)
        return self._slice(x, local, 0)

    def shared_rand(self) -> torch.Tensor:
        """One ``U[0, 1)`` value of shape ``(1,)``, the same on every process."""
        return torch.rand(1, generator=self.generator, device=self.device)

    def shared_randint(self, high: int) -> int:
        """One integer in ``[0, high)``, the same on every process."""
        return int(torch.randint(high, (1,), generator=self.generator, device=self.device).item())
