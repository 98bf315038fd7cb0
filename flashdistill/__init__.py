"""flashdistill: distil slow diffusion / rectified-flow generators into fast few-step students."""

import logging as _logging

# torchao (pulled in by diffusers when installed) and torch's pytree registry log import-time warnings about
# GPU-only kernels that say nothing useful on a CPU machine; keep real errors.
for _name in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree",
              "diffusers.quantizers.torchao.torchao_quantizer"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

__version__ = "0.1.0"
__all__ = ["__version__"]
