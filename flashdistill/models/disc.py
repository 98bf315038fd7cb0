"""Multi-head discriminator on proxy features (SD3.5-Flash, Bandyopadhyay et al. 2025).

Student ("fake") and teacher or data ("real") samples are noised to a few fixed levels ``t*`` and passed
through the proxy velocity model; the image tokens ``(B, N, D)`` of several transformer blocks are tapped
(:func:`disc_features`). Each tapped block gets its own head: 4 token-wise layers, mean pooling over tokens,
then 4 layers on the pooled vector, the last of which is the linear map to one logit (8 linear layers in all;
every hidden layer is Linear → LayerNorm → SiLU). Each head is re-initialised with a small probability every
iteration (:meth:`MultiHeadDisc.refresh`), and its optimiser state is cleared with it.

The proxy is only a feature extractor here: callers may freeze its parameters; the generator's adversarial
gradient still flows through the features into the student sample (nothing here detaches).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..flow import interpolate
from ..types import Conditioning

__all__ = ["DiscHead", "MultiHeadDisc", "disc_features"]


def _mlp_layer(d_in: int, d_out: int) -> list[nn.Module]:
    return [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU()]


class DiscHead(nn.Module):
    """One head: ``(B, N, D)`` tokens -> ``(B,)`` logits.

    ``token_layers`` hidden layers per token, mean pool over N, ``vector_layers - 1`` hidden layers on the
    pooled vector, then ``Linear(hidden, 1)``.
    """

    def __init__(self, feature_dim: int, hidden: int = 256, token_layers: int = 4, vector_layers: int = 4):
        super().__init__()
        if token_layers < 1 or vector_layers < 1:
            raise ValueError(
                f"need token_layers >= 1 and vector_layers >= 1, got {token_layers}, {vector_layers}"
            )
        token = []
        for k in range(token_layers):
            token += _mlp_layer(feature_dim if k == 0 else hidden, hidden)
        vector = []
        for _ in range(vector_layers - 1):
            vector += _mlp_layer(hidden, hidden)
        self.token_mlp = nn.Sequential(*token)
        self.vector_mlp = nn.Sequential(*vector, nn.Linear(hidden, 1))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default ``Linear``/``LayerNorm`` initialisation, drawn from ``generator`` when given."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3:
            raise ValueError(f"head input must be (B, N, D), got shape {tuple(features.shape)}")
        pooled = self.token_mlp(features).mean(1)
        return self.vector_mlp(pooled).squeeze(-1)


class MultiHeadDisc(nn.Module):
    """One :class:`DiscHead` per tapped block.

    Args:
        feature_dim: token width D of the tapped blocks (one int for all, or one per head).
        num_heads: number of heads (= number of tapped blocks).
        hidden: width of every hidden layer.
        token_layers, vector_layers: layers before / after pooling (paper: 4 and 4).
        generator: optional RNG for the initial weights.
    """

    def __init__(
        self,
        feature_dim: int | Sequence[int],
        num_heads: int,
        hidden: int = 256,
        token_layers: int = 4,
        vector_layers: int = 4,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        dims = [feature_dim] * num_heads if isinstance(feature_dim, int) else list(feature_dim)
        if num_heads < 1 or len(dims) != num_heads:
            raise ValueError(
                f"need num_heads >= 1 and one feature_dim per head, got {num_heads} heads, dims {dims}"
            )
        self.heads = nn.ModuleList(DiscHead(d, hidden, token_layers, vector_layers) for d in dims)
        for head in self.heads:
            head.reset_parameters(generator)

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-block features ``(B, N, D)`` (in head order) -> per-head logits ``(B,)``."""
        if len(features) != self.num_heads:
            raise ValueError(f"got features of {len(features)} blocks for {self.num_heads} heads")
        return [head(f) for head, f in zip(self.heads, features, strict=True)]

    @torch.no_grad()
    def refresh(
        self,
        p: float,
        generator: torch.Generator | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> list[int]:
        """Re-initialise each head independently with probability ``p``; return the refreshed head indices.

        One uniform draw per head is taken from ``generator`` (so the draws do not depend on the outcome),
        then the chosen heads are re-initialised from it. If ``optimizer`` is given, the state of exactly
        those heads' parameters (AdamW ``exp_avg``, ``exp_avg_sq``, ``step``) is dropped, so it restarts from
        zero.
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"refresh probability must be in [0, 1], got {p}")
        on = generator.device if generator is not None else None
        draws = torch.rand(self.num_heads, generator=generator, device=on).tolist()
        chosen = [k for k in range(self.num_heads) if draws[k] < p]
        for k in chosen:
            self.heads[k].reset_parameters(generator)
            if optimizer is not None:
                for param in self.heads[k].parameters():
                    optimizer.state.pop(param, None)
        return chosen


def disc_features(
    proxy,
    x0: torch.Tensor,
    t_star: Sequence[float],
    cond: Conditioning,
    blocks: Sequence[int],
    noise: torch.Tensor,
) -> list[torch.Tensor]:
    """Noise ``x0`` to each level in ``t_star`` and tap the proxy's image tokens at ``blocks`` in one call.

    Args:
        proxy: a model with ``features(x_t, t, cond, blocks) -> list[(B', N, D)]`` (or a dict keyed by block).
        x0: samples ``(B, C, H, W)``; pass ``x0.detach()`` for the discriminator update, keep the graph
            for the generator's adversarial gradient.
        t_star: fixed noise levels ``L`` in [0, 1].
        noise: ``(B, C, H, W)`` (shared by all levels) or ``(L·B, C, H, W)`` (level-major).

    Returns one tensor per block, ``(L·B, N, D)``, level-major (rows ``l·B .. (l+1)·B − 1`` are level ``l``),
    the layout the adversarial losses fold with ``num_levels=L``. A missing block raises; there is no fallback
    to the final output.
    """
    levels = [float(s) for s in t_star]
    if not levels or any(not 0.0 <= s <= 1.0 for s in levels):
        raise ValueError(f"t_star must be a non-empty list of levels in [0, 1], got {levels}")
    blocks = [int(b) for b in blocks]
    if not blocks:
        raise ValueError("need at least one block to tap")
    if not callable(getattr(proxy, "features", None)):
        raise TypeError(f"proxy {type(proxy).__name__} has no features(); cannot tap blocks {blocks}")
    num_blocks = getattr(proxy, "num_blocks", None)
    if num_blocks is not None:
        for b in blocks:
            if not -num_blocks <= b < num_blocks:
                raise ValueError(f"block {b} does not exist: the proxy has blocks 0..{num_blocks - 1}")
    b_size, n_lv = x0.shape[0], len(levels)
    if noise.shape[0] == b_size:
        noise = noise.repeat(n_lv, *([1] * (noise.ndim - 1)))
    elif noise.shape[0] != n_lv * b_size:
        raise ValueError(f"noise batch {noise.shape[0]} is neither B={b_size} nor L·B={n_lv * b_size}")
    t = torch.tensor(levels, dtype=x0.dtype, device=x0.device).repeat_interleave(b_size)
    x_t = interpolate(x0.repeat(n_lv, *([1] * (x0.ndim - 1))), noise, t)
    out = proxy.features(x_t, t, Conditioning.cat([cond] * n_lv), blocks)
    if isinstance(out, dict):
        feats = []
        for b in blocks:
            if out.get(b) is None:
                raise KeyError(f"proxy.features returned no tokens for block {b} (got blocks {sorted(out)})")
            feats.append(out[b])
    else:
        feats = list(out)
        if len(feats) != len(blocks):
            raise ValueError(
                f"proxy.features returned {len(feats)} tensors for blocks {blocks}; a block is missing"
            )
    for b, f in zip(blocks, feats, strict=True):
        if f is None:
            raise ValueError(f"proxy.features returned no tokens for block {b}")
        if f.ndim != 3 or f.shape[0] != n_lv * b_size:
            raise ValueError(
                f"block {b}: expected image tokens (L·B={n_lv * b_size}, N, D), got {tuple(f.shape)}"
            )
    return feats
