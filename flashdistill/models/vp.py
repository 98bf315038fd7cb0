"""Adapters that drive variance-preserving denoisers (SD1.5/SDXL UNets, PixArt) on the flow path.

A flow point ``x_t`` at time ``t`` is the VP point ``x_vp = (alpha + sigma)·x_t`` with ``t = sigma/(alpha+sigma)``
(:func:`flashdistill.flow.flow_to_vp`). The adapter finds the (fractional) discrete timestep whose schedule has
that ``sigma/(alpha+sigma)``, calls the network there, and converts its epsilon or v prediction into the flow
velocity ``v = eps - x0``, so losses and samplers never see a second convention.

A DDPM schedule covers flow times ``[t_min, t_max]`` only (SD1.5: index 0 is t 0.029, index 999 is t 0.936). Outside
it the network is called at the nearest end index on the unit-variance input ``x_t / sqrt((1-t)² + t²)`` and its
prediction is read with that index's ``(alpha, sigma)``: at ``t = 1`` the input is the pure noise a stock pipeline
with "trailing" spacing feeds at index 999, and the velocity is ``(x_t - x0)/t`` with that index's x0 estimate
(finite, unlike ``(eps - x_t)/(1 - t)``), so ``x0_from_v`` returns it and an Euler step re-noises it with the
known noise. Below ``t_min`` the noise estimate is kept instead. Inside the range this is the exact conversion.

Grids: a VP model's own few-step grid is its "trailing" timesteps (SD1.5 at 4 steps: indices 999, 749, 499, 249),
``trailing_grid``; Flash Diffusion's modes are fractions of the index range, ``flow_time_of_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..flow import bcast, vp_alpha_sigma, vp_t_from_flow_t
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
    def from_scheduler(cls, net: nn.Module, scheduler, **kwargs) -> VPAdapter:
        """Build from a diffusers DDPM/DDIM-style scheduler (reads ``alphas_cumprod`` and ``prediction_type``)."""
        return cls(net, torch.as_tensor(scheduler.alphas_cumprod), scheduler.config.prediction_type, **kwargs)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def inner(self) -> nn.Module:
        """The network itself, also when a DDP wrapper (which hides its attributes) is what gets called."""
        net = self.net
        return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def flow_times(self) -> torch.Tensor:
        """Flow time of every discrete timestep index, ``(T,)`` increasing, float64."""
        alpha, sigma = vp_alpha_sigma(self.alphas_cumprod)
        return sigma / (alpha + sigma)

    def flow_time_of_index(self, index: torch.Tensor) -> torch.Tensor:
        """Flow time of (fractional) timestep indices in ``[0, T-1]``, by linear interpolation, float64."""
        grid = self.flow_times()
        index = torch.as_tensor(index, dtype=torch.float64, device=grid.device).clamp(0, len(grid) - 1)
        lo = index.floor().long().clamp(max=len(grid) - 2)
        return grid[lo] + (index - lo) * (grid[lo + 1] - grid[lo])

    def flow_time_of_fraction(self, fraction: torch.Tensor) -> torch.Tensor:
        """Flow time of a fraction ``f`` in (0, 1] of the index range: index ``f·T - 1``, so that fractions
        ``k/N`` are exactly the "trailing" timesteps of an N-step sampler (1 -> index T-1)."""
        fraction = torch.as_tensor(fraction, dtype=torch.float64)
        return self.flow_time_of_index(fraction * self.num_train_timesteps - 1)

    def trailing_grid(self, num_steps: int) -> torch.Tensor:
        """The ``(num_steps + 1,)`` decreasing flow times of diffusers' "trailing" spacing (indices
        ``round(T - k·T/N) - 1``, k = 0..N-1, as its schedulers round them), ending at 0."""
        T = self.num_train_timesteps
        index = torch.round(T - torch.arange(num_steps, dtype=torch.float64) * T / num_steps) - 1
        return torch.cat([self.flow_time_of_index(index), torch.zeros(1, dtype=torch.float64)])

    def _net(self, x_vp: torch.Tensor, tau: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device).to(torch.float64).expand(x_t.shape[0])
        acp = self.alphas_cumprod.to(x_t.device)
        grid_ends = self.flow_times().to(x_t.device)[[0, -1]]
        t_net = t.clamp(grid_ends[0].item(), grid_ends[1].item())  # the schedule's own range
        x64 = x_t.to(torch.float64)
        x_in = x64 / bcast(torch.sqrt((1 - t) ** 2 + t**2), x64)  # unit variance: the VP point inside the range
        r = torch.sqrt((1 - t_net) ** 2 + t_net**2)
        alpha, sigma = bcast((1 - t_net) / r, x64), bcast(t_net / r, x64)
        tau = vp_t_from_flow_t(t_net, acp)
        out = self._net(x_in.to(self.dtype), tau.to(torch.float32), cond).to(torch.float64)
        if self.prediction_type == "epsilon":
            eps, x0 = out, (x_in - sigma * out) / alpha
        else:  # v = alpha·eps - sigma·x0
            eps, x0 = sigma * x_in + alpha * out, alpha * x_in - sigma * out
        # inside the range both routes give eps - x0; beyond t_max the x0 route keeps the index's x0 estimate
        # (x0 = x_t - t·v) and below t_min the noise route keeps its noise estimate; each divides by t >= 1/2
        tb = bcast(t, x64)
        v = torch.where(tb >= 0.5, (x64 - x0) / tb.clamp(min=0.5), (eps - x64) / (1 - tb).clamp(min=0.5))
        return v.to(x_t.dtype)


class UNetAdapter(VPAdapter):
    """``UNet2DConditionModel`` (SD1.5 / SDXL). SDXL needs ``cond.pooled``; its size conditions
    ``cond.extra["time_ids"]`` ``(B, 6)`` default to what ``StableDiffusionXLPipeline`` builds for an uncropped
    image of the latent size times ``vae_scale_factor``: ``(H, W, 0, 0, H, W)``."""

    def __init__(self, net, alphas_cumprod, prediction_type="epsilon", vae_scale_factor: int = 8):
        super().__init__(net, alphas_cumprod, prediction_type)
        self.vae_scale_factor = vae_scale_factor

    def _net(self, x_vp, tau, cond):
        added = None
        if getattr(self.inner.config, "addition_embed_type", None) == "text_time":
            if cond.pooled is None:
                raise ValueError("an SDXL-style UNet needs cond.pooled (the second text encoder's pooled output)")
            time_ids = cond.extra.get("time_ids")
            if time_ids is None:
                h, w = (s * self.vae_scale_factor for s in x_vp.shape[-2:])
                time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=x_vp.device).expand(x_vp.shape[0], 6)
            added = {"text_embeds": cond.pooled.to(x_vp.dtype), "time_ids": time_ids.to(x_vp.dtype)}
        return self.net(x_vp, tau, encoder_hidden_states=cond.prompt_embeds.to(x_vp.dtype),
                        added_cond_kwargs=added, return_dict=False)[0]

    @property
    def encoder_blocks(self) -> list[nn.Module]:
        """The encoder the discriminator may tap (Flash Diffusion): the down blocks, then the mid block."""
        return [*self.inner.down_blocks, self.inner.mid_block]

    def _check_blocks(self, blocks: Sequence[int]) -> list[int]:
        n = len(self.encoder_blocks)
        if not blocks or any(not -n <= b < n for b in blocks):
            raise ValueError(f"feature blocks {list(blocks)} invalid: this UNet's encoder has blocks 0..{n - 1} "
                             f"({n - 1} down blocks, then the mid block {n - 1}); the decoder is not tapped")
        return [b % n for b in blocks]

    def feature_channels(self, blocks: Sequence[int]) -> list[int]:
        channels = list(self.inner.config.block_out_channels) + [self.inner.config.block_out_channels[-1]]
        return [channels[b] for b in self._check_blocks(blocks)]

    def feature_maps(self, x_t, t, cond, blocks: Sequence[int], stop_early: bool = True) -> list[torch.Tensor]:
        """Outputs ``(B, C, h, w)`` of the chosen encoder blocks (down blocks return ``(maps, skips)``)."""
        modules = [self.encoder_blocks[b] for b in self._check_blocks(blocks)]
        with FeatureTap(modules, lambda out: out[0] if isinstance(out, tuple) else out,
                        stop_after_last=stop_early) as tap:
            self(x_t, t, cond)
        return tap.result()

    def features(self, x_t, t, cond, blocks: Sequence[int] = (-1,), stop_early: bool = True) -> list[torch.Tensor]:
        """:meth:`feature_maps` flattened to tokens ``(B, h·w, C)`` (default: the mid block)."""
        return [f.flatten(2).transpose(1, 2) for f in self.feature_maps(x_t, t, cond, blocks, stop_early)]


class PixArtAdapter(VPAdapter):
    """``PixArtTransformer2DModel``; a learned-sigma output (2× channels) keeps only its first half.

    PixArt-α 1024 (``use_additional_conditions``) is conditioned on the image size in pixels and its aspect ratio:
    taken from ``cond.extra["resolution"]`` ``(B, 2)`` / ``["aspect_ratio"]`` ``(B, 1)`` when given, else from the
    latent size times ``vae_scale_factor``, as ``PixArtAlphaPipeline`` computes them without resolution binning.
    """

    def __init__(self, net, alphas_cumprod, prediction_type="epsilon", vae_scale_factor: int = 8):
        super().__init__(net, alphas_cumprod, prediction_type)
        self.vae_scale_factor = vae_scale_factor

    def micro_conditions(self, x: torch.Tensor, cond: Conditioning) -> dict:
        if not getattr(self.inner, "use_additional_conditions", False):
            return {"resolution": None, "aspect_ratio": None}
        n = x.shape[0]
        height, width = (s * self.vae_scale_factor for s in x.shape[-2:])
        resolution = cond.extra.get("resolution")
        if resolution is None:
            resolution = torch.tensor([[height, width]], device=x.device).expand(n, 2)
        aspect = cond.extra.get("aspect_ratio")
        if aspect is None:
            aspect = torch.tensor([[height / width]], device=x.device).expand(n, 1)
        return {"resolution": resolution.to(x.dtype), "aspect_ratio": aspect.to(x.dtype)}

    def _net(self, x_vp, tau, cond):
        out = self.net(x_vp, encoder_hidden_states=cond.prompt_embeds.to(x_vp.dtype), timestep=tau,
                       added_cond_kwargs=self.micro_conditions(x_vp, cond),
                       encoder_attention_mask=cond.extra.get("attention_mask"), return_dict=False)[0]
        return out[:, : x_vp.shape[1]] if out.shape[1] == 2 * x_vp.shape[1] else out

    def _check_blocks(self, blocks: Sequence[int]) -> list[int]:
        n = len(self.inner.transformer_blocks)
        if not blocks or any(not -n <= b < n for b in blocks):
            raise ValueError(f"feature blocks {list(blocks)} invalid: this transformer has blocks 0..{n - 1}")
        return [b % n for b in blocks]

    def feature_channels(self, blocks: Sequence[int]) -> list[int]:
        return [self.inner.inner_dim] * len(self._check_blocks(blocks))

    def features(self, x_t, t, cond, blocks: Sequence[int], stop_early: bool = True) -> list[torch.Tensor]:
        """Tokens ``(B, N, D)`` after each chosen transformer block."""
        modules = [self.inner.transformer_blocks[b] for b in self._check_blocks(blocks)]
        with FeatureTap(modules, lambda out: out, stop_after_last=stop_early) as tap:
            self(x_t, t, cond)
        return tap.result()

    def feature_maps(self, x_t, t, cond, blocks: Sequence[int], stop_early: bool = True) -> list[torch.Tensor]:
        """The image tokens of ``blocks`` on their patch grid, ``(B, D, H/p, W/p)`` each."""
        from .conv_disc import tokens_to_map

        p = self.inner.config.patch_size
        h, w = x_t.shape[-2] // p, x_t.shape[-1] // p
        return [tokens_to_map(f, h, w) for f in self.features(x_t, t, cond, blocks, stop_early)]
