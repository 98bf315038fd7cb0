"""The shape every prompt encoder shares: a pipeline, the T5 token length, ``encode(prompts) -> Conditioning`` and
the unconditional ``null`` the stock pipeline uses without a negative prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..types import Conditioning

__all__ = ["PromptEncoder"]


class PromptEncoder:
    def __init__(self, pipe, max_sequence_length: int):
        self.pipe, self.max_sequence_length = pipe, max_sequence_length

    @property
    def device(self) -> torch.device:
        return self.pipe.text_encoder.device

    def encode(self, prompts: Sequence[str]) -> Conditioning:
        raise NotImplementedError

    def null(self, batch_size: int = 1) -> Conditioning:
        """The unconditional conditioning (the empty prompt, as diffusers' default negative prompt)."""
        return self.encode([""] * batch_size)
