"""Calling a VP teacher's denoiser in training: plain (:func:`call_denoiser`), or PixArt-nano with its T5 trained
alongside (:class:`PixArtWithText`, ``train_text_encoder: true`` in ``pixart_nano_teacher.yaml``).

SD3-nano's T5 was trained inside an MM-DiT whose context stream keeps processing the text tokens, so its output
tokens need not carry their own attributes: a linear probe reads a shape noun's colour from its T5 output token
with 0.45 accuracy (chance 0.17), from the UNet's CLIP token with 0.94 (``benchmarks/text_binding_probe.py``).
PixArt-α cross-attends to the T5 output directly, as it comes, so a frozen T5 that does not bind leaves the binding
to the cross-attention alone; the genuine PixArt-α relies on T5-XXL, which does bind. Training the small T5 with
the transformer was the remedy tried (measured in docs/miniature_world.md: 3,000 steps moved the T5 but neither
the probe nor ShapesEval; kept as a switch). Both are one module here (one optimiser, one EMA, one DDP wrapper),
and the prompt's tokens are its input: the gradient reaches the T5 on every process.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PixArtWithText", "call_denoiser", "t5_tokens"]


def call_denoiser(net, x, tau, embeds, mask):
    """The UNet's or PixArt transformer's raw output at DDPM index ``tau`` (fp32), PixArt's learned-sigma half cut."""
    if mask is None:
        return net(x, tau, encoder_hidden_states=embeds, return_dict=False)[0]
    out = net(x, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=tau,
              added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]
    return out[:, : x.shape[1]]


def t5_tokens(pipe, prompts: list[str], max_sequence_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` as ``PixArtAlphaPipeline.encode_prompt`` tokenizes (``clean_caption``
    off: lower-cased, stripped; padded to ``max_sequence_length``)."""
    tok = pipe.tokenizer([p.lower().strip() for p in prompts], padding="max_length", max_length=max_sequence_length,
                         truncation=True, add_special_tokens=True, return_tensors="pt")
    return tok.input_ids.to(device), tok.attention_mask.to(device)


class PixArtWithText(nn.Module):
    """The PixArt transformer and its T5 encoder as one trained module: ``(x, index, ids, mask)`` -> the raw
    transformer output (learned-sigma half cut). The submodules are the pipeline's own, so an EMA swapped into
    this module is what the pipeline samples and exports."""

    def __init__(self, transformer: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder.requires_grad_(True)  # the pipeline builder freezes it

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(ids, attention_mask=mask)[0]

    def forward(self, x: torch.Tensor, tau: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return call_denoiser(self.transformer, x, tau, self.encode(ids, mask), mask)
