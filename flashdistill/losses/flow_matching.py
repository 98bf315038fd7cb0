"""Conditional flow-matching loss (Lipman et al. 2023; Liu et al. 2023; Esser et al. 2024, SD3).

Trains a velocity model ``model(x_t, t, cond) -> v`` to regress the path velocity ``noise - x0`` at
``x_t = (1 - t)·x0 + t·noise`` (time convention in :mod:`flashdistill.flow`). Used to train the SD3-nano
teacher and, in SD3.5-Flash stage 2, the proxy ("fake") velocity model on detached student samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..flow import interpolate, velocity
from ..timesteps import draw_device
from ..types import Conditioning, LossOutput
from ._precision import acc

__all__ = ["FlowMatchingLoss"]


class FlowMatchingLoss:
    """``L(x0) = w(t)·mean_{C,H,W} (model(x_t, t, cond) − (noise − x0))²`` with ``t ~ t_sampler``.

    Args:
        t_sampler: callable ``(batch_size, generator=None, device=None) -> t (B,)`` from
            :mod:`flashdistill.timesteps` (e.g. ``LogitNormal()`` for the teacher, ``Uniform()`` for the
            proxy).
        weighting: optional ``w(t) (B,) -> (B,)`` multiplying the per-sample loss; ``None`` is ``w = 1``.
    """

    def __init__(self, t_sampler, weighting: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.t_sampler, self.weighting = t_sampler, weighting

    def __call__(
        self,
        model,
        x0: torch.Tensor,
        cond: Conditioning,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> LossOutput:
        """Per-sample loss ``(B,)`` for data (or student samples) ``x0`` ``(B, C, H, W)``.

        ``noise`` ``(B, C, H, W)`` and ``t`` ``(B,)`` are drawn (with ``generator``) unless given.
        The mean over ``C, H, W`` is taken in (at least) fp32.
        """
        # stop-gradient: x0 is a training target (for the proxy: the student's samples); only `model` learns.
        x0 = x0.detach()
        b = x0.shape[0]
        if t is None:
            t = self.t_sampler(b, generator=generator, device=x0.device)
        t = t.to(device=x0.device, dtype=x0.dtype)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                                device=draw_device(generator, x0.device)).to(x0.device)
        x_t = interpolate(x0, noise, t)
        v = model(x_t, t, cond)
        err = (acc(v) - acc(velocity(x0, noise))).pow(2).flatten(1).mean(1)
        loss = err if self.weighting is None else err * acc(self.weighting(t))
        return LossOutput(loss, {"fm/loss": loss.mean().detach(), "fm/mse": err.mean().detach()})
