"""One small interface over the pipeline families: which network denoises, how prompts become a ``Conditioning``,
and which flow-time grid a sampler of N steps uses.

* ``"sd3"``: ``StableDiffusion3Pipeline`` (MM-DiT, rectified flow) -> :class:`~flashdistill.models.sd3.SD3Adapter`;
* ``"unet"``: ``StableDiffusionPipeline`` (SD1.5-family UNet, VP) -> :class:`~flashdistill.models.vp.UNetAdapter`;
* ``"sdxl"``: ``StableDiffusionXLPipeline`` (UNet with pooled text and size conditions, VP) -> ``UNetAdapter``;
* ``"pixart"``: ``PixArtAlphaPipeline`` (DiT, VP) -> :class:`~flashdistill.models.vp.PixArtAdapter`.

Prompt encodings are the stock pipelines' own (``encode_prompt``), so a sampler built from these parts reproduces
the stock pipeline call on the same noise (the parity tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..families import FAMILIES
from ..types import Conditioning
from .prompt_encoder import PromptEncoder

__all__ = ["KINDS", "kind_of", "denoiser_of", "adapter_for", "TextEncoder", "text_encoder_for", "is_vp"]

KINDS = FAMILIES  # pipeline class name -> family


def kind_of(pipe) -> str:
    """``"sd3"``, ``"unet"``, ``"sdxl"`` or ``"pixart"``; anything else is refused by name."""
    name = type(pipe).__name__
    if name not in KINDS:
        raise ValueError(f"a {name}: flashdistill drives {', '.join(KINDS)} pipelines")
    return KINDS[name]


def is_vp(pipe) -> bool:
    return kind_of(pipe) != "sd3"


def denoiser_of(pipe) -> torch.nn.Module:
    """The network that denoises: the UNet, or the transformer."""
    return pipe.unet if kind_of(pipe) in ("unet", "sdxl") else pipe.transformer


def adapter_for(pipe, net: torch.nn.Module | None = None) -> torch.nn.Module:
    """The flow-path adapter of ``net`` (default: the pipeline's own denoiser)."""
    net = denoiser_of(pipe) if net is None else net
    kind = kind_of(pipe)
    if kind == "sd3":
        from .sd3 import SD3Adapter

        return SD3Adapter(net)
    from .vp import PixArtAdapter, UNetAdapter

    if kind in ("unet", "sdxl"):
        return UNetAdapter.from_scheduler(net, pipe.scheduler, vae_scale_factor=pipe.vae_scale_factor)
    return PixArtAdapter.from_scheduler(net, pipe.scheduler, vae_scale_factor=pipe.vae_scale_factor)


class TextEncoder(PromptEncoder):
    """Prompt encoding of a UNet or PixArt pipeline, identical to its ``encode_prompt``: CLIP's last hidden state
    (SD1.5); both CLIPs' penultimate states and the pooled vector (SDXL); or T5 tokens with their attention mask in
    ``extra["attention_mask"]`` (PixArt)."""

    def __init__(self, pipe, max_sequence_length: int = 120):
        super().__init__(pipe, max_sequence_length)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Conditioning:
        prompts = list(prompts)
        kind = kind_of(self.pipe)
        if kind == "unet":
            embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
            return Conditioning(embeds)
        if kind == "sdxl":
            embeds, _, pooled, _ = self.pipe.encode_prompt(prompts, device=self.device, num_images_per_prompt=1,
                                                           do_classifier_free_guidance=False)
            return Conditioning(embeds, pooled)
        embeds, mask, _, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                                     max_sequence_length=self.max_sequence_length)
        return Conditioning(embeds, extra={"attention_mask": mask})

    def null(self, batch_size: int = 1) -> Conditioning:
        """The unconditional conditioning the stock pipeline uses without a negative prompt: the empty prompt, or
        zeros for SDXL folders with ``force_zeros_for_empty_prompt`` (the SDXL default)."""
        empty = super().null(batch_size)
        if getattr(self.pipe.config, "force_zeros_for_empty_prompt", False):
            return Conditioning(torch.zeros_like(empty.prompt_embeds), torch.zeros_like(empty.pooled))
        return empty


def text_encoder_for(pipe, max_sequence_length: int):
    if kind_of(pipe) == "sd3":
        from .sd3 import SD3TextEncoder

        return SD3TextEncoder(pipe, max_sequence_length)
    return TextEncoder(pipe, max_sequence_length)
