"""Adapters that drive variance-preserving denoisers (SD1.5/SDXL UNets, PixArt) on the flow path.

A flow point ``x_t`` at time ``t`` is the VP point ``x_vp = (alpha + sigma)·x_t`` with ``t = sigma/(alpha+sigma)``
(:func:`flashdistill.flow.flow_to_vp`). The adapter finds the (fractional) discrete timestep whose schedule has
that ``sigma/(alpha+sigma)``, calls the network there, and converts its epsilon or v prediction into the flow
velocity, so losses and samplers never see a second convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..flow import eps_to_v_flow, flow_to_vp, vp_t_from_flow_t, vpred_to_v_flow
from ..types import Conditioning
from .taps import FeatureTap

__all__ = ["VPAdapter", "UNetAdapter", "PixArtAdapter"]


class VPAdapter(nn.Module):
    """Base class: subclasses implement ``_net(x_vp, tau, cond)`` returning the raw prediction."""

    def __init__(self, net: nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        self.net, self.prediction_type = net, prediction_type
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float64), persistent=False)

    @classmethod
    def from_scheduler(cls, net: nn.Module, scheduler) -> VPAdapter:
        """Build from a diffusers DDPM/DDIM-style scheduler (reads ``alphas_cumprod`` and ``prediction_type``)."""
        return cls(net, torch.as_tensor(scheduler.alphas_cumprod), scheduler.config.prediction_type)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def _net(self, x_vp: torch.Tensor, tau: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device).to(torch.float64).expand(x_t.shape[0])
        x_vp, alpha, sigma = flow_to_vp(x_t.to(torch.float64), t)
        tau = vp_t_from_flow_t(t, self.alphas_cumprod.to(x_t.device))
        out = self._net(x_vp.to(self.dtype), tau.to(torch.float32), cond).to(torch.float64)
        if self.prediction_type == "epsilon":
            v = eps_to_v_flow(x_t.to(torch.float64), out, t)
        else:
            v = vpred_to_v_flow(x_vp, out, alpha, sigma, t)
        return v.to(x_t.dtype)


class UNetAdapter(VPAdapter):
    """``UNet2DConditionModel`` (SD1.5 / SDXL). SDXL needs ``cond.pooled`` and ``cond.extra['time_ids']``."""

    def _net(self, x_vp, tau, cond):
        added = None
        if getattr(self.net.config, "addition_embed_type", None) == "text_time":
            if cond.pooled is None or "time_ids" not in cond.extra:
                raise ValueError("an SDXL-style UNet needs cond.pooled and cond.extra['time_ids']")
            added = {"text_embeds": cond.pooled.to(x_vp.dtype), "time_ids": cond.extra["time_ids"].to(x_vp.dtype)}
        return self.net(x_vp, tau, encoder_hidden_states=cond.prompt_embeds.to(x_vp.dtype),
                        added_cond_kwargs=added, return_dict=False)[0]

    def features(self, x_t, t, cond, blocks: Sequence[int] = (0,), stop_early: bool = True) -> list[torch.Tensor]:
        """The mid-block output ``(B, C, h, w)`` flattened to tokens ``(B, h·w, C)`` (``blocks`` is ignored)."""
        with FeatureTap([self.net.mid_block], lambda out: out, stop_after_last=stop_early) as tap:
            self(x_t, t, cond)
        return [f.flatten(2).transpose(1, 2) for f in tap.result()]


class PixArtAdapter(VPAdapter):
    """``PixArtTransformer2DModel``; a learned-sigma output (2× channels) keeps only its first half."""

    def _net(self, x_vp, tau, cond):
        out = self.net(x_vp, encoder_hidden_states=cond.prompt_embeds.to(x_vp.dtype), timestep=tau,
                       added_cond_kwargs={"resolution": None, "aspect_ratio": None},
                       encoder_attention_mask=cond.extra.get("attention_mask"), return_dict=False)[0]
        return out[:, : x_vp.shape[1]] if out.shape[1] == 2 * x_vp.shape[1] else out

    def features(self, x_t, t, cond, blocks: Sequence[int], stop_early: bool = True) -> list[torch.Tensor]:
        """Tokens ``(B, N, D)`` after each chosen transformer block."""
        n = len(self.net.transformer_blocks)
        if not blocks or any(not -n <= b < n for b in blocks):
            raise ValueError(f"feature blocks {list(blocks)} invalid: this transformer has blocks 0..{n - 1}")
        modules = [self.net.transformer_blocks[b] for b in blocks]
        with FeatureTap(modules, lambda out: out, stop_after_last=stop_early) as tap:
            self(x_t, t, cond)
        return tap.result()
