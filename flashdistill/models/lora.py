"""LoRA helpers (peft) for students that share their frozen base weights with the teacher.

With adapters disabled the student *is* the teacher, so a LoRA student costs no second copy of the base model:
``with teacher_mode(model): ...`` runs the frozen teacher through the same module.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

from torch import nn

__all__ = ["SD3_TARGETS", "UNET_TARGETS", "add_lora", "teacher_mode", "AdaptersOff", "merge_lora",
           "count_parameters", "lora_state_dict", "lora_metadata"]

# Suffix names: peft matches them in every block, including SD3.5's dual-attention ``attn2.*`` modules, which
# target lists written as ``attn.to_q`` miss.
SD3_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def add_lora(model: nn.Module, rank: int = 16, alpha: float | None = None,
             target_modules: Sequence[str] = SD3_TARGETS, adapter_name: str = "default",
             init_lora_weights: bool | str = True) -> nn.Module:
    """Attach a LoRA adapter to a diffusers model and freeze everything else. Returns the model."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank,
                        target_modules=list(target_modules), init_lora_weights=init_lora_weights)
    model.requires_grad_(False)
    if hasattr(model, "add_adapter"):  # diffusers' PeftAdapterMixin (SD3, UNet)
        model.add_adapter(config, adapter_name=adapter_name)
    else:  # a model without the mixin (PixArt-α): peft injects the same LoRA layers in place
        from peft import inject_adapter_in_model

        inject_adapter_in_model(config, model, adapter_name=adapter_name)
        model.peft_config = {adapter_name: config}
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"LoRA matched no module of {type(model).__name__} with targets {list(target_modules)}")
    return model


@contextmanager
def teacher_mode(model: nn.Module):
    """Run ``model`` with its adapters disabled (the frozen base = the teacher); re-enable them on exit.

    Gradient checkpointing is off inside: checkpointing would recompute these forwards during the backward, when
    the adapters are on again (the student's own blocks need them on in the same backward), so the teacher's
    activations are kept instead."""
    checkpointed = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in checkpointed:
        m.gradient_checkpointing = False
    _set_adapters(model, False)
    try:
        yield model
    finally:
        _set_adapters(model, True)
        for m in checkpointed:
            m.gradient_checkpointing = True


def _set_adapters(model: nn.Module, enabled: bool) -> None:
    if hasattr(model, "enable_adapters"):  # diffusers' PeftAdapterMixin
        model.enable_adapters() if enabled else model.disable_adapters()
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():  # adapters injected by peft (add_lora on a model without the mixin)
        if isinstance(module, BaseTunerLayer):
            module.enable_adapters(enabled)


class AdaptersOff:
    """The frozen teacher of a LoRA student: calls ``model`` (an adapter, ``model(x_t, t, cond) -> v``, with
    ``features``/``feature_maps``) with the adapters of ``module`` disabled for the duration of each call."""

    def __init__(self, model, module: nn.Module):
        self.model, self.module = model, module

    def __call__(self, *args, **kwargs):
        with teacher_mode(self.module):
            return self.model(*args, **kwargs)

    def features(self, *args, **kwargs):
        with teacher_mode(self.module):
            return self.model.features(*args, **kwargs)

    def feature_maps(self, *args, **kwargs):
        with teacher_mode(self.module):
            return self.model.feature_maps(*args, **kwargs)

    def feature_channels(self, blocks):
        return self.model.feature_channels(blocks)


def lora_metadata(model: nn.Module, adapter_name: str = "default") -> dict:
    """The adapter's peft config as a dict (rank, alpha, targets): saved beside the weights so that
    ``load_lora_weights`` restores the trained scale ``alpha / r``."""
    return model.peft_config[adapter_name].to_dict()


def merge_lora(model: nn.Module, scale: float = 1.0) -> nn.Module:
    """Fold the LoRA weights into the base weights and remove the adapter layers."""
    model.fuse_lora(lora_scale=scale)
    model.unload_lora()
    return model


def lora_state_dict(model: nn.Module) -> dict:
    """The adapter weights in diffusers' pipeline format (keys without the ``transformer.`` prefix)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
