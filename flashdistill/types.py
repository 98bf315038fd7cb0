"""Small typed containers that cross module boundaries.

Shapes: latents ``(B, C, H, W)``, token sequences ``(B, N, D)``, pooled vectors ``(B, P)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Conditioning", "LossOutput"]


@dataclass
class Conditioning:
    """What a denoiser is conditioned on, for a batch of B samples.

    prompt_embeds: text tokens ``(B, L, D)`` (SD3: CLIP-L|CLIP-G padded to the T5 width, then T5 tokens).
    pooled: pooled text vector ``(B, P)`` or ``None`` for models without one (SD1.5).
    extra: model-specific tensors with batch dimension first (SDXL ``time_ids``, inpainting masks, low-res images).
    """

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def _map(self, fn) -> Conditioning:
        return Conditioning(
            prompt_embeds=fn(self.prompt_embeds),
            pooled=None if self.pooled is None else fn(self.pooled),
            extra={k: fn(v) for k, v in self.extra.items()},
        )

    def to(self, device=None, dtype: torch.dtype | None = None) -> Conditioning:
        """Move to ``device``; floating tensors are cast to ``dtype`` when given."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return self._map(move)

    def detach(self) -> Conditioning:
        return self._map(lambda t: t.detach())

    def __getitem__(self, index) -> Conditioning:
        """Select samples along the batch dimension (int, slice, list or index tensor)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    def repeat(self, n: int) -> Conditioning:
        """Repeat each sample ``n`` times consecutively: ``[a, b] -> [a, a, b, b]`` for n=2."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch dimension."""
        first = items[0]
        pooled = None if first.pooled is None else torch.cat([c.pooled for c in items])
        extra = {k: torch.cat([c.extra[k] for c in items]) for k in first.extra}
        return Conditioning(torch.cat([c.prompt_embeds for c in items]), pooled, extra)

    def state(self) -> dict[str, torch.Tensor]:
        """Flat dict of tensors (for safetensors caching)."""
        out = {"prompt_embeds": self.prompt_embeds}
        if self.pooled is not None:
            out["pooled"] = self.pooled
        out.update({f"extra.{k}": v for k, v in self.extra.items()})
        return out

    @staticmethod
    def from_state(state: dict[str, torch.Tensor]) -> Conditioning:
        extra = {k[len("extra.") :]: v for k, v in state.items() if k.startswith("extra.")}
        return Conditioning(state["prompt_embeds"], state.get("pooled"), extra)


@dataclass
class LossOutput:
    """Per-sample loss values ``(B,)`` plus scalar logs: detached 0-d tensors (or floats), left on their device so
    that logging never forces a GPU sync per term; ``Run.log`` converts them once per metrics row."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor | float] = field(default_factory=dict)

    def mean(self) -> torch.Tensor:
        return self.loss.mean()


