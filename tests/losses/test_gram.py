"""Gram-matrix loss: definitions, the closed-form gradient, permutation invariance of the channel gram."""

from __future__ import annotations

import pytest
import torch

from flashdistill.losses import GramLoss, gram_matrix

B, N, D = 2, 5, 3


def _f(seed):
    return torch.randn(B, N, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gram_definitions():
    f = _f(0)
    torch.testing.assert_close(gram_matrix(f), torch.einsum("bnd,bne->bde", f, f) / N)
    torch.testing.assert_close(gram_matrix(f, "token"), torch.einsum("bnd,bmd->bnm", f, f) / D)
    assert gram_matrix(f.to(torch.bfloat16)).dtype == torch.float32


def test_gradient_matches_closed_form():
    f_s, f_t = _f(1).requires_grad_(True), _f(2).requires_grad_(True)
    out = GramLoss()([f_s], [f_t])
    out.loss.sum().backward()
    # L_b = mean_{D×D}(G_s − G_t)², G = FᵀF/N  =>  dL_b/dF_s = 4/(N·D²) · F_s (G_s − G_t)  (G symmetric).
    with torch.no_grad():
        diff = gram_matrix(f_s) - gram_matrix(f_t)
        expected = 4 / (N * D**2) * f_s @ diff
    torch.testing.assert_close(f_s.grad, expected, rtol=1e-12, atol=1e-14)
    assert f_t.grad is None  # teacher features are the target


def test_channel_gram_ignores_token_order_token_gram_does_not():
    f = _f(3)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(perm, torch.arange(N))
    assert GramLoss("channel")([f[:, perm]], [f]).loss.abs().max() < 1e-28
    assert GramLoss("token")([f[:, perm]], [f]).loss.min() > 1e-3


def test_blocks_are_averaged():
    a, b, c, d = _f(4), _f(5), _f(6), _f(7)
    both = GramLoss()([a, c], [b, d]).loss
    torch.testing.assert_close(both, (GramLoss()([a], [b]).loss + GramLoss()([c], [d]).loss) / 2)


def test_errors():
    with pytest.raises(ValueError, match="matching non-empty"):
        GramLoss()([_f(0)], [])
    with pytest.raises(ValueError, match="unknown gram mode"):
        GramLoss("spatial")
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        gram_matrix(torch.zeros(2, 3))
