"""Model adapters (one calling convention ``model(x_t, t, cond) -> v``), LoRA helpers, feature taps, tiny models."""

from .lora import add_lora, count_parameters, merge_lora, teacher_mode
from .sd3 import SD3Adapter, SD3TextEncoder
from .taps import FeatureTap
from .vae import LatentCodec
from .vp import PixArtAdapter, UNetAdapter, VPAdapter

__all__ = [
    "SD3Adapter", "SD3TextEncoder", "UNetAdapter", "PixArtAdapter", "VPAdapter", "FeatureTap", "LatentCodec",
    "add_lora", "teacher_mode", "merge_lora", "count_parameters",
]
