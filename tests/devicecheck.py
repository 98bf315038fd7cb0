"""A torch function mode that fails any random draw whose device is left to chance.

On CUDA a ``torch.Generator(device="cuda")`` only fills CUDA tensors: ``torch.randint(n, (b,), generator=g)``
(no ``device=``) raises there at the first iteration, yet passes on a CPU-only machine, where every default
device is the generator's. Under :class:`StrictRandomDevices`, every random *factory* given a generator must
name its device explicitly and that device must be the generator's; every random op on an existing tensor
(``multinomial``, ``bernoulli``, in-place ``uniform_``/``normal_``...) must have that tensor on the
generator's device. A CPU test run under this mode therefore catches the bug class without a GPU.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

FACTORIES = {torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal}
TENSOR_OPS = {"multinomial", "bernoulli", "bernoulli_", "uniform_", "normal_", "random_", "exponential_",
              "cauchy_", "log_normal_", "geometric_", "poisson"}


def _same(a, b) -> bool:
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


class StrictRandomDevices(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.checked = 0  # how many generator-driven draws were checked (a test asserts it saw some)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        gen = kwargs.get("generator")
        if isinstance(gen, torch.Generator):
            name = getattr(func, "__name__", str(func))
            if func in FACTORIES and not (args and isinstance(args[0], torch.Tensor)):
                device = kwargs.get("device")
                if device is None:
                    raise AssertionError(f"torch.{name}(generator=<{gen.device}>) without device=: "
                                         "on CUDA this fails or draws on the wrong device")
                if not _same(device, gen.device):
                    raise AssertionError(f"torch.{name}: device={device} but the generator is on {gen.device}")
                self.checked += 1
            elif name in TENSOR_OPS or func in FACTORIES:
                tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if tensor is not None and not _same(tensor.device, gen.device):
                    raise AssertionError(f"{name} on a {tensor.device} tensor with a {gen.device} generator")
                self.checked += 1
        return func(*args, **kwargs)
