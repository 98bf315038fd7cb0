"""Adversarial losses for multi-head discriminators.

* ``"non_saturating"`` (Goodfellow et al. 2014; the SD3.5-Flash adversarial objective on proxy features):
  generator ``softplus(−D(fake))``; discriminator ``softplus(−D(real)) + softplus(D(fake))``.
* ``"lsgan"`` (Mao et al. 2017, coding a=0, b=c=1; Flash Diffusion, Chadebec et al. 2024):
  generator ``½(D(fake) − 1)²``; discriminator ``½(D(real) − 1)² + ½D(fake)²``.
* ``"hinge"`` (Lim & Ye 2017; Miyato et al. 2018): generator ``−D(fake)``;
  discriminator ``relu(1 − D(real)) + relu(1 + D(fake))``.

Logits come as one tensor per head. A head sees ``num_levels`` noised copies of each sample stacked
level-major (``(L·B,)``, the layout of :func:`flashdistill.models.disc.disc_features`); per-sample losses
``(B,)`` are the mean over levels and then over heads. The discriminator loss must be given logits of
*detached* student samples (the caller cuts the graph); the generator loss keeps the graph through the
features into the student sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..types import LossOutput
from ._precision import acc

__all__ = ["GeneratorAdvLoss", "DiscriminatorAdvLoss", "ADV_KINDS"]

ADV_KINDS = ("non_saturating", "lsgan", "hinge")


def _check_kind(kind: str) -> str:
    if kind not in ADV_KINDS:
        raise ValueError(f"unknown adversarial loss {kind!r}; expected one of {ADV_KINDS}")
    return kind


def _fold(term: torch.Tensor, num_levels: int) -> torch.Tensor:
    """``(L·B,)`` level-major per-entry terms -> ``(B,)`` mean over levels."""
    if term.ndim != 1 or term.shape[0] % num_levels:
        raise ValueError(f"head logits must be (L·B,) with L={num_levels}, got shape {tuple(term.shape)}")
    return term.reshape(num_levels, -1).mean(0)


def _check_heads(logits: list[torch.Tensor], name: str) -> None:
    if len(logits) == 0:
        raise ValueError(f"{name}: need logits from at least one head")


class GeneratorAdvLoss:
    """Generator side: per-sample ``mean_heads mean_levels gen_term(D(fake))``, shape ``(B,)``, at least
    fp32."""

    def __init__(self, kind: str = "non_saturating"):
        self.kind = _check_kind(kind)

    def term(self, fake: torch.Tensor) -> torch.Tensor:
        if self.kind == "non_saturating":
            return F.softplus(-fake)
        if self.kind == "lsgan":
            return 0.5 * (fake - 1).pow(2)
        return -fake

    def __call__(self, fake_logits: list[torch.Tensor], num_levels: int = 1) -> LossOutput:
        """``fake_logits``: per head ``(L·B,)`` logits of student samples (graph kept)."""
        _check_heads(fake_logits, "GeneratorAdvLoss")
        per_head = [_fold(self.term(acc(l)), num_levels) for l in fake_logits]
        loss = torch.stack(per_head).mean(0)
        logs = {
            "adv_g/loss": loss.mean().detach(),
            "adv_g/fake_logit": torch.cat([l.detach().float() for l in fake_logits]).mean().detach(),
        }
        return LossOutput(loss, logs)


class DiscriminatorAdvLoss:
    """Discriminator side: per-sample ``mean_heads mean_levels [real_term(D(real)) + fake_term(D(fake))]``.

    Real and fake logits must have the same shape per head (paired batches); returns ``(B,)`` in at least
    fp32.
    """

    def __init__(self, kind: str = "non_saturating"):
        self.kind = _check_kind(kind)

    def terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "non_saturating":
            return F.softplus(-real), F.softplus(fake)
        if self.kind == "lsgan":
            return 0.5 * (real - 1).pow(2), 0.5 * fake.pow(2)
        return F.relu(1 - real), F.relu(1 + fake)

    def __call__(
        self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor], num_levels: int = 1
    ) -> LossOutput:
        """``real_logits`` / ``fake_logits``: per head ``(L·B,)`` logits of real (teacher or data) samples and
        of detached student samples."""
        _check_heads(real_logits, "DiscriminatorAdvLoss")
        if len(real_logits) != len(fake_logits):
            raise ValueError(f"got {len(real_logits)} real heads but {len(fake_logits)} fake heads")
        per_head, logs = [], {}
        threshold = 0.5 if self.kind == "lsgan" else 0.0
        accs = []
        for k, (real, fake) in enumerate(zip(real_logits, fake_logits, strict=True)):
            if real.shape != fake.shape:
                raise ValueError(f"head {k}: real logits {tuple(real.shape)} vs fake {tuple(fake.shape)}")
            t_real, t_fake = self.terms(acc(real), acc(fake))
            head = _fold(t_real, num_levels) + _fold(t_fake, num_levels)
            per_head.append(head)
            hit = 0.5 * ((real > threshold).float().mean() + (fake < threshold).float().mean())
            accs.append(hit.detach())
            logs[f"adv_d/head{k}"] = head.mean().detach()
        loss = torch.stack(per_head).mean(0)
        logs.update(
            {
                "adv_d/loss": loss.mean().detach(),
                "adv_d/real_logit": torch.cat([l.detach().float() for l in real_logits]).mean().detach(),
                "adv_d/fake_logit": torch.cat([l.detach().float() for l in fake_logits]).mean().detach(),
                "adv_d/acc": torch.stack(accs).mean(),
            }
        )
        return LossOutput(loss, logs)
