"""Gram-matrix feature loss (SD3.5-Flash, Bandyopadhyay et al. 2025, the 4→2-step continuation; the gram
matrix as a second-order feature statistic follows Gatys et al. 2016).

For a feature map ``F`` ``(B, N, D)`` (N image tokens of width D, e.g. proxy block outputs):

* ``mode="channel"`` (default): ``G = Fᵀ F / N``, ``(B, D, D)`` — channel co-activations averaged over tokens,
  invariant to token order (a style/texture statistic, as in Gatys et al.).
* ``mode="token"``: ``G = F Fᵀ / D``, ``(B, N, N)`` — token-to-token similarities (spatial layout).

Per sample and block the loss is ``mean_{entries} (G_student − G_teacher)²``; blocks are averaged. Gram
matrices are computed in (at least) fp32. Student and teacher features are paired sample by sample (same
prompt and noise).
"""

from __future__ import annotations

import torch

from ..types import LossOutput
from ._precision import acc

__all__ = ["GramLoss", "gram_matrix"]


def gram_matrix(features: torch.Tensor, mode: str = "channel") -> torch.Tensor:
    """``(B, N, D)`` -> ``(B, D, D)`` (``channel``: ``FᵀF/N``) or ``(B, N, N)`` (``token``: ``FFᵀ/D``),
    at least fp32."""
    if features.ndim != 3:
        raise ValueError(f"features must be (B, N, D), got shape {tuple(features.shape)}")
    f = acc(features)
    if mode == "channel":
        return f.transpose(1, 2) @ f / f.shape[1]
    if mode == "token":
        return f @ f.transpose(1, 2) / f.shape[2]
    raise ValueError(f"unknown gram mode {mode!r}; expected 'channel' or 'token'")


class GramLoss:
    """MSE between gram matrices of student-sample and teacher-sample features, per sample ``(B,)``.

    Args:
        mode: ``"channel"`` (D×D) or ``"token"`` (N×N), see module docstring.
    """

    def __init__(self, mode: str = "channel"):
        if mode not in ("channel", "token"):
            raise ValueError(f"unknown gram mode {mode!r}; expected 'channel' or 'token'")
        self.mode = mode

    def __call__(
        self, student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]
    ) -> LossOutput:
        """Lists of per-block features ``(B, N, D)``; gradients flow into ``student_features`` only."""
        if len(student_features) != len(teacher_features) or not student_features:
            raise ValueError(
                f"need matching non-empty feature lists, got {len(student_features)} student and "
                f"{len(teacher_features)} teacher blocks"
            )
        per_block = []
        for f_s, f_t in zip(student_features, teacher_features, strict=True):
            if f_s.shape != f_t.shape:
                raise ValueError(
                    f"student features {tuple(f_s.shape)} vs teacher features {tuple(f_t.shape)}"
                )
            # stop-gradient: the teacher sample's statistics are the target.
            g_t = gram_matrix(f_t.detach(), self.mode)
            g_s = gram_matrix(f_s, self.mode)
            per_block.append((g_s - g_t).pow(2).flatten(1).mean(1))
        loss = torch.stack(per_block).mean(0)
        return LossOutput(loss, {"gram/loss": loss.mean().detach()})
