r"""Distribution matching (DMD: Yin et al., CVPR 2024, the distribution-matching gradient and its
weighting; DMD2: Yin et al., NeurIPS 2024; SD3.5-Flash, Bandyopadhyay et al. 2025, distribution matching with
timestep sharing).

The KL gradient between the student's output distribution and the teacher's is the difference of their scores
at a noised student sample. In x0 space (time convention in :mod:`flashdistill.flow`), with the teacher
(``real``, CFG-wrapped) and the proxy (``fake``, trained by flow matching on student samples, no CFG) both
evaluated at the same point ``x_t``:

    ``x0_real = x_t − t·v_teacher(x_t, t)``,  ``x0_fake = x_t − t·v_proxy(x_t, t)``
    ``g = (x0_fake − x0_real) / n``,  ``n = mean_{C,H,W} |x0_student − x0_real|``   (DMD's weighting)

``n`` is per sample, computed in fp32 (fp64 for fp64 inputs) from x0 estimates (never from a velocity) and
clamped below by ``eps``. The update is applied through a stop-gradient MSE, computed in the same precision:

    ``loss = 0.5 · mean_{C,H,W} (x0_student − sg(x0_student − g))²``,
    so ``d loss_b / d x0_student_b = g_b / (C·H·W)`` (exact up to rounding ``x0 − (x0 − g)`` in the working
    precision; ``loss.mean()`` gives ``g / (B·C·H·W)``, the scale of DMD2's ``F.mse_loss(..., "mean")``).
    The loss *value* is just ``0.5·mean(g²)``, a diagnostic; only its gradient matters.

Where ``x_t`` comes from is the caller's choice, and the key design point of SD3.5-Flash:

* **timestep sharing** (the paper): ``x_t`` is the student's own trajectory point at its grid time ``t`` (the
  landing point of the step whose x0 estimate is ``x0_student``); the recipe passes it in.
* **w/o timestep sharing** (classic DMD, the ablation): :func:`renoised_point` re-noises ``x0_student`` to a
  random ``t``.

Either way the gradient enters through ``x0_student`` only: ``x_t`` is detached before the teacher and proxy
see it, and neither network receives gradient.
"""

from __future__ import annotations

import torch

from ..flow import interpolate, x0_from_v
from ..timesteps import draw_device
from ..types import Conditioning, LossOutput
from ._precision import acc

__all__ = ["DMDLoss", "dmd_gradient", "dmd_normaliser", "renoised_point"]


def dmd_normaliser(x0_student: torch.Tensor, x0_real: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample ``max(mean_{C,H,W} |x0_student − x0_real|, eps)``, shape ``(B,)``, fp32 even for bf16/fp16
    inputs (fp64 for fp64)."""
    diff = acc(x0_student.detach()) - acc(x0_real.detach())
    return diff.abs().flatten(1).mean(1).clamp_min(eps)


def dmd_gradient(
    x0_student: torch.Tensor,
    x0_real: torch.Tensor,
    x0_fake: torch.Tensor,
    normalise: bool = True,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The DMD direction ``g = (x0_fake − x0_real) / n`` ``(B, C, H, W)`` and normaliser ``n`` ``(B,)``, both
    in at least fp32.

    With ``normalise=False``, ``n = 1``.
    """
    if normalise:
        n = dmd_normaliser(x0_student, x0_real, eps)
    else:
        n = torch.ones(x0_student.shape[0], dtype=acc(x0_student).dtype, device=x0_student.device)
    g = (acc(x0_fake.detach()) - acc(x0_real.detach())) / n.reshape(-1, *([1] * (x0_student.ndim - 1)))
    return g, n


def renoised_point(
    x0_student: torch.Tensor,
    t_sampler,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classic DMD ("w/o timestep sharing"): ``x_t = (1 − t)·x0_student + t·noise`` with ``t ~ t_sampler``.

    Returns ``(x_t (B, C, H, W), t (B,))``; ``x_t`` is detached. Use a sampler that avoids ``t = 0`` (where
    the scores carry no signal), e.g. ``Uniform(0.02, 0.98)``.
    """
    t = t_sampler(x0_student.shape[0], generator=generator, device=x0_student.device).to(x0_student.dtype)
    if noise is None:
        noise = torch.randn(x0_student.shape, generator=generator, dtype=x0_student.dtype,
                            device=draw_device(generator, x0_student.device)).to(x0_student.device)
    # stop-gradient: the noised point only feeds the frozen score networks.
    return interpolate(x0_student.detach(), noise, t), t


class DMDLoss:
    """Distribution-matching loss on the student's x0 (see module docstring for the equations).

    Args:
        normalise: divide the direction by the per-sample mean ``|x0_student − x0_real|`` (DMD's weighting).
        eps: lower bound of that normaliser.
    """

    def __init__(self, normalise: bool = True, eps: float = 1e-5):
        self.normalise, self.eps = normalise, eps

    def __call__(
        self,
        teacher,
        proxy,
        x0_student: torch.Tensor,
        x_t: torch.Tensor,
        t,
        cond: Conditioning,
    ) -> LossOutput:
        """Per-sample loss ``(B,)``.

        Args:
            teacher: real-score model, already CFG-wrapped, ``teacher(x_t, t, cond) -> v``.
            proxy: fake-score model (no CFG), same convention.
            x0_student: the student's x0 estimate ``(B, C, H, W)``, carrying the generator's graph.
            x_t: the point where the scores are taken ``(B, C, H, W)`` (shared trajectory point or re-noised).
            t: its flow time, float or ``(B,)``.
        """
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        t = t.expand(x_t.shape[0]).clone() if t.ndim == 0 else t
        with torch.no_grad():
            # stop-gradient: the scores are constants for the generator; x_t (which may hang on the student's
            # graph under timestep sharing) is cut so the gradient enters through x0_student only.
            x_t = x_t.detach()
            t_acc, x_t_acc = acc(t), acc(x_t)
            x0_real = x0_from_v(x_t_acc, acc(teacher(x_t, t, cond)), t_acc)
            x0_fake = x0_from_v(x_t_acc, acc(proxy(x_t, t, cond)), t_acc)
            g, n = dmd_gradient(x0_student, x0_real, x0_fake, self.normalise, self.eps)
        x0 = acc(x0_student)
        # stop-gradient: the target is a constant, so d/dx0 of 0.5·mean((x0 − target)²) is g / (C·H·W).
        target = (x0 - g).detach()
        loss = 0.5 * (x0 - target).pow(2).flatten(1).mean(1)
        logs = {
            "dmd/loss": loss.mean().detach(),
            "dmd/normaliser": n.mean().detach(),
            "dmd/grad_abs": g.abs().mean().detach(),
            "dmd/real_fake_gap": (x0_fake - x0_real).abs().mean().detach(),
            "dmd/t": t.float().mean().detach(),
        }
        return LossOutput(loss, logs)
