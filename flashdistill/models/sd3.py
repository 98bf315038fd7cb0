"""Adapters for the SD3 / SD3.5 family: the MM-DiT denoiser and its text stack.

``SD3Adapter(transformer)`` is called ``model(x_t, t, cond) -> v`` with flow times ``t`` in [0, 1]; it owns the
diffusers quirks: the 0..1000 timestep scale, pooled projections, dtype casts, LoRA scale, and feature taps
(each ``transformer_blocks[i]`` returns ``(text_tokens, image_tokens)``; we keep the image tokens ``(B, N, D)``).
``SD3TextEncoder(pipe)`` turns prompts into a :class:`~flashdistill.types.Conditioning`, optionally dropping
each encoder's output independently (text-encoder dropout, as SD3 was trained).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..types import Conditioning
from .conv_disc import tokens_to_map
from .prompt_encoder import PromptEncoder
from .taps import FeatureTap

__all__ = ["SD3Adapter", "SD3TextEncoder", "image_tokens"]


def image_tokens(output) -> torch.Tensor:
    """Image tokens of an SD3 block output ``(text_tokens | None, image_tokens)``."""
    return output[1] if isinstance(output, tuple) else output


class SD3Adapter(nn.Module):
    """``SD3Transformer2DModel`` behind the ``model(x_t, t, cond) -> v`` convention.

    ``lora_scale`` is passed as ``joint_attention_kwargs={"scale": s}`` (0 reproduces the base model).
    Inputs are cast to the transformer's dtype and the velocity is returned in ``x_t``'s dtype.
    """

    def __init__(self, transformer: nn.Module, lora_scale: float | None = None):
        super().__init__()
        self.transformer = transformer
        self.lora_scale = lora_scale

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def num_blocks(self) -> int:
        return len(self.transformer.transformer_blocks)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        dtype = self.dtype
        t = torch.as_tensor(t, device=x_t.device).to(torch.float32).expand(x_t.shape[0])
        kwargs = {"scale": self.lora_scale} if self.lora_scale is not None else None
        v = self.transformer(
            hidden_states=x_t.to(dtype),
            # diffusers' SD3 expects sigma·1000, in fp32 as its own pipeline passes it (a bf16 cast rounds 750 to 752)
            timestep=t * 1000.0,
            encoder_hidden_states=cond.prompt_embeds.to(device=x_t.device, dtype=dtype),
            pooled_projections=cond.pooled.to(device=x_t.device, dtype=dtype),
            joint_attention_kwargs=kwargs,
            return_dict=False,
        )[0]
        return v.to(x_t.dtype)

    def _check_blocks(self, blocks: Sequence[int]) -> list[int]:
        n = self.num_blocks
        bad = [b for b in blocks if not -n <= b < n]
        if bad or not blocks:
            raise ValueError(f"feature blocks {list(blocks)} invalid: this transformer has blocks 0..{n - 1}")
        return [b % n for b in blocks]

    def features(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, blocks: Sequence[int],
                 stop_early: bool = True) -> list[torch.Tensor]:
        """Image tokens ``(B, N, D)`` after each block in ``blocks``; stops after the deepest when ``stop_early``."""
        blocks = self._check_blocks(blocks)
        modules = [self.transformer.transformer_blocks[b] for b in blocks]
        with FeatureTap(modules, image_tokens, stop_after_last=stop_early) as tap:
            self(x_t, t, cond)
        return tap.result()

    def feature_channels(self, blocks: Sequence[int]) -> list[int]:
        """Channels of each :meth:`feature_maps` output."""
        cfg = self.transformer.config
        return [cfg.num_attention_heads * cfg.attention_head_dim] * len(self._check_blocks(blocks))

    def feature_maps(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, blocks: Sequence[int],
                     stop_early: bool = True) -> list[torch.Tensor]:
        """The image tokens of ``blocks`` on their patch grid, ``(B, D, H/p, W/p)`` each (Flash Diffusion's
        discriminator input)."""
        p = self.transformer.config.patch_size
        h, w = x_t.shape[-2] // p, x_t.shape[-1] // p
        return [tokens_to_map(f, h, w) for f in self.features(x_t, t, cond, blocks, stop_early)]

    def forward_with_features(self, x_t, t, cond, blocks: Sequence[int]):
        """``(v, features)`` from one full forward pass."""
        blocks = self._check_blocks(blocks)
        modules = [self.transformer.transformer_blocks[b] for b in blocks]
        with FeatureTap(modules, image_tokens) as tap:
            v = self(x_t, t, cond)
        return v, tap.result()


class SD3TextEncoder(PromptEncoder):
    """Prompt encoding for an SD3 pipeline, identical to ``StableDiffusion3Pipeline.encode_prompt``.

    ``max_sequence_length`` is the T5 token length; it changes the transformer's output, so a student must be
    run with the value it was trained with (saved in its folder). With the pipeline's T5 dropped
    (``text_encoder_3=None``) the T5 slice is zeros, as in diffusers.
    """

    def __init__(self, pipe, max_sequence_length: int = 32):
        super().__init__(pipe, max_sequence_length)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Conditioning:
        prompt_embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=list(prompts), prompt_2=None, prompt_3=None, device=self.device,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
        )
        return Conditioning(prompt_embeds, pooled)

    def encode_with_dropout(self, prompts: Sequence[str], p_drop: Sequence[float] = (0.0, 0.0, 0.0),
                            generator: torch.Generator | None = None) -> Conditioning:
        """Encode with each of (CLIP-L, CLIP-G, T5) independently replaced, per sample, by its null output.

        A CLIP's null output is its encoding of the empty prompt; T5's null is zeros, exactly what diffusers
        feeds when the pipeline is loaded with ``text_encoder_3=None``. Training a teacher this way is what
        lets the T5 analogue be dropped at inference. Not wrapped in ``no_grad``: text encoders can be trained.
        """
        pipe, n = self.pipe, len(prompts)
        prompts = list(prompts) + [""]
        parts = []
        for idx in (0, 1):
            embeds, pooled = pipe._get_clip_prompt_embeds(prompt=prompts, device=self.device, clip_model_index=idx)
            parts.append((embeds, pooled))
        t5 = pipe._get_t5_prompt_embeds(prompt=prompts, max_sequence_length=self.max_sequence_length,
                                        device=self.device)
        parts.append((torch.cat([t5[:n], torch.zeros_like(t5[n:])]), None))
        dropped = []
        for (embeds, pooled), p in zip(parts, p_drop):
            draw_on = generator.device if generator is not None else embeds.device
            keep = (torch.rand(n, generator=generator, device=draw_on) >= p).to(embeds.device)
            e = torch.where(keep[:, None, None], embeds[:n], embeds[n:])
            q = None if pooled is None else torch.where(keep[:, None], pooled[:n], pooled[n:])
            dropped.append((e, q))
        (l_e, l_p), (g_e, g_p), (t5_e, _) = dropped
        clip = torch.cat([l_e, g_e], dim=-1)
        clip = nn.functional.pad(clip, (0, t5_e.shape[-1] - clip.shape[-1]))
        return Conditioning(torch.cat([clip, t5_e], dim=-2), torch.cat([l_p, g_p], dim=-1))
