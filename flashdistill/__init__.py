"""flashdistill: distil slow diffusion / rectified-flow generators into fast few-step students."""

__version__ = "0.1.0"
__all__ = ["__version__"]
