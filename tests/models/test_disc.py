"""Multi-head discriminator: head shapes, refresh (weights, optimiser state), feature taps, gradient flow."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from flashdistill.flow import interpolate
from flashdistill.losses import DiscriminatorAdvLoss, GeneratorAdvLoss
from flashdistill.models.disc import DiscHead, MultiHeadDisc, disc_features
from flashdistill.types import Conditioning

C, H, W, D = 2, 4, 4, 8  # latent (C, H, W); one token per pixel, width D


class FakeProxy(nn.Module):
    """A tiny velocity model with ``features``: per-pixel tokens (embedding + time), residual MLP blocks."""

    def __init__(self, num_blocks: int = 3, drop: int | None = None):
        super().__init__()
        self.embed = nn.Linear(C + 1, D)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(D, D), nn.SiLU()) for _ in range(num_blocks))
        self.out = nn.Linear(D, C)
        self.drop, self.feature_calls = drop, 0

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def _tokens(self, x_t, t):
        tok = x_t.flatten(2).transpose(1, 2)  # (B, N, C)
        return self.embed(torch.cat([tok, t.reshape(-1, 1, 1).expand(-1, tok.shape[1], 1)], -1))

    def features(self, x_t, t, cond, blocks):
        self.feature_calls += 1
        h, taps = self._tokens(x_t, t), {}
        for i, block in enumerate(self.blocks):
            h = h + block(h)
            taps[i] = h
        # `drop` imitates a hook that never fired: that block's tokens are silently absent.
        return [taps[b] for b in blocks if b != self.drop]

    def forward(self, x_t, t, cond):
        h = self._tokens(x_t, t)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).transpose(1, 2).reshape(x_t.shape)


def _cond(b):
    return Conditioning(prompt_embeds=torch.zeros(b, 1, 3))


def test_head_architecture_and_shapes():
    head = DiscHead(feature_dim=D, hidden=16)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 8 and linears[0].in_features == D and linears[-1].out_features == 1
    assert sum(isinstance(m, nn.LayerNorm) for m in head.modules()) == 7
    assert sum(isinstance(m, nn.SiLU) for m in head.modules()) == 7
    assert sum(isinstance(m, nn.Linear) for m in head.token_mlp) == 4

    disc = MultiHeadDisc(feature_dim=[D, 12], num_heads=2, hidden=16)
    feats = [torch.randn(5, 7, D), torch.randn(5, 3, 12)]
    logits = disc(feats)
    assert [tuple(l.shape) for l in logits] == [(5,), (5,)]
    # Token-wise layers then mean pooling: token order does not matter.
    perm = torch.tensor([6, 2, 0, 1, 5, 3, 4])
    torch.testing.assert_close(disc([feats[0][:, perm], feats[1]])[0], logits[0])
    with pytest.raises(ValueError, match="3 blocks for 2 heads"):
        disc(feats + [feats[0]])


def _trained_disc_and_optimizer(num_heads=6):
    torch.manual_seed(0)
    disc = MultiHeadDisc(D, num_heads, hidden=16, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(disc.parameters(), lr=1e-2)
    feats = [torch.randn(4, 5, D) for _ in range(num_heads)]
    sum(l.pow(2).mean() for l in disc(feats)).backward()
    opt.step()
    return disc, opt


def test_refresh_reinitialises_only_selected_heads_and_clears_their_state():
    disc, opt = _trained_disc_and_optimizer()
    before = copy.deepcopy(disc.state_dict())
    state_before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in disc.parameters()}

    seed = 5
    expected = [
        k for k, u in enumerate(torch.rand(6, generator=torch.Generator().manual_seed(seed))) if u < 0.5
    ]
    assert 0 < len(expected) < 6  # a proper subset, so "only the selected heads" is actually tested
    refreshed = disc.refresh(0.5, torch.Generator().manual_seed(seed), optimizer=opt)
    assert refreshed == expected

    for k, head in enumerate(disc.heads):
        for name, p in head.named_parameters():
            old = before[f"heads.{k}.{name}"]
            if k in refreshed:
                assert p not in opt.state  # exp_avg, exp_avg_sq and step dropped
                assert not torch.equal(p, old), f"head {k} {name} was not re-initialised"
            else:
                torch.testing.assert_close(p, old, rtol=0, atol=0)
                for key, value in state_before[p].items():
                    torch.testing.assert_close(opt.state[p][key], value, rtol=0, atol=0)

    # The next step restarts Adam for refreshed heads only.
    sum(l.pow(2).mean() for l in disc([torch.randn(4, 5, D) for _ in range(6)])).backward()
    opt.step()
    for k, head in enumerate(disc.heads):
        steps = {float(opt.state[p]["step"]) for p in head.parameters()}
        assert steps == ({1.0} if k in refreshed else {2.0})


def test_refresh_is_seeded_and_matches_a_fresh_layer_init():
    a, _ = _trained_disc_and_optimizer()
    b = copy.deepcopy(a)
    ra = a.refresh(0.5, torch.Generator().manual_seed(11))
    rb = b.refresh(0.5, torch.Generator().manual_seed(11))
    assert ra == rb and ra
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    # Re-initialised LayerNorms are back to identity; linear weights are within PyTorch's default bound.
    head = a.heads[ra[0]]
    assert torch.equal(head.token_mlp[1].weight, torch.ones(16)) and torch.equal(
        head.token_mlp[1].bias, torch.zeros(16)
    )
    assert head.token_mlp[0].weight.abs().max() <= 1 / D**0.5
    assert a.refresh(0.0, torch.Generator().manual_seed(0)) == []
    assert a.refresh(1.0, torch.Generator().manual_seed(0)) == list(range(6))
    with pytest.raises(ValueError, match="probability"):
        a.refresh(1.5)


def test_disc_features_layout_and_single_call():
    torch.manual_seed(0)
    proxy = FakeProxy()
    x0, noise = torch.randn(3, C, H, W), torch.randn(3, C, H, W)
    t_star = [0.2, 0.6]
    feats = disc_features(proxy, x0, t_star, _cond(3), blocks=[0, 2], noise=noise)
    assert proxy.feature_calls == 1
    assert [tuple(f.shape) for f in feats] == [(6, H * W, D), (6, H * W, D)]
    for level, ts in enumerate(t_star):
        t = torch.full((3,), ts)
        direct = proxy.features(interpolate(x0, noise, t), t, _cond(3), [0, 2])
        for f, d in zip(feats, direct):
            torch.testing.assert_close(f[level * 3 : (level + 1) * 3], d)
    # Per-level noise (L·B, C, H, W) is used as given.
    noise2 = torch.randn(6, C, H, W)
    f2 = disc_features(proxy, x0, t_star, _cond(3), [1], noise2)[0]
    t = torch.tensor([0.2] * 3 + [0.6] * 3)
    torch.testing.assert_close(
        f2, proxy.features(interpolate(x0.repeat(2, 1, 1, 1), noise2, t), t, None, [1])[0]
    )


def test_missing_block_raises_naming_it():
    x0, noise = torch.randn(2, C, H, W), torch.randn(2, C, H, W)
    with pytest.raises(ValueError, match="block 7 does not exist"):
        disc_features(FakeProxy(), x0, [0.5], _cond(2), [0, 7], noise)
    with pytest.raises(ValueError, match="a block is missing"):
        disc_features(FakeProxy(drop=1), x0, [0.5], _cond(2), [0, 1], noise)

    class DictProxy(FakeProxy):
        def features(self, x_t, t, cond, blocks):
            return {0: super().features(x_t, t, cond, [0])[0]}

    with pytest.raises(KeyError, match="block 2"):
        disc_features(DictProxy(), x0, [0.5], _cond(2), [0, 2], noise)
    with pytest.raises(TypeError, match="no features"):
        disc_features(nn.Linear(2, 2), x0, [0.5], _cond(2), [0], noise)
    with pytest.raises(ValueError, match="t_star"):
        disc_features(FakeProxy(), x0, [1.5], _cond(2), [0], noise)


def test_generator_gradient_flows_through_frozen_proxy_into_the_student():
    torch.manual_seed(0)
    proxy = FakeProxy().requires_grad_(False)
    student = nn.Conv2d(C, C, 1)
    disc = MultiHeadDisc(D, num_heads=2, hidden=16)
    z = torch.randn(3, C, H, W)
    x0 = student(z)
    t_star, noise = [0.25, 0.75], torch.randn(3, C, H, W)

    logits = disc(disc_features(proxy, x0, t_star, _cond(3), [0, 2], noise))
    GeneratorAdvLoss()(logits, num_levels=2).mean().backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in proxy.parameters())

    # Discriminator update: detached samples, gradient reaches the heads but not the student.
    student.zero_grad()
    disc.zero_grad()
    real = disc(disc_features(proxy, torch.randn(3, C, H, W), t_star, _cond(3), [0, 2], noise))
    fake = disc(disc_features(proxy, student(z).detach(), t_star, _cond(3), [0, 2], noise))
    DiscriminatorAdvLoss()(real, fake, num_levels=2).mean().backward()
    assert student.weight.grad is None or student.weight.grad.abs().sum() == 0
    assert all(p.grad is not None for p in disc.parameters())


def test_with_the_sd3_adapter_on_the_tiny_pipeline(tiny_pipe):
    """End to end on a genuine tiny SD3 transformer: taps, shapes, gradient into x0, frozen proxy."""
    from flashdistill.models import SD3Adapter

    proxy = SD3Adapter(copy.deepcopy(tiny_pipe.transformer)).requires_grad_(False)
    cfg = proxy.transformer.config
    side = cfg.sample_size
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, cfg.in_channels, side, side, generator=g).requires_grad_(True)
    noise = torch.randn(2, cfg.in_channels, side, side, generator=g)
    cond = Conditioning(
        prompt_embeds=torch.randn(2, 5, cfg.joint_attention_dim, generator=g),
        pooled=torch.randn(2, cfg.pooled_projection_dim, generator=g),
    )
    blocks = list(range(proxy.num_blocks))
    feats = disc_features(proxy, x0, [0.3, 0.7], cond, blocks, noise)
    width = cfg.num_attention_heads * cfg.attention_head_dim
    tokens = (side // cfg.patch_size) ** 2
    assert [tuple(f.shape) for f in feats] == [(4, tokens, width)] * len(blocks)
    disc = MultiHeadDisc(width, len(blocks), hidden=16)
    GeneratorAdvLoss()(disc(feats), num_levels=2).mean().backward()
    assert x0.grad is not None and x0.grad.abs().sum() > 0
    assert all(p.grad is None for p in proxy.parameters())
    with pytest.raises(ValueError, match=f"block {proxy.num_blocks + 3} does not exist"):
        disc_features(proxy, x0, [0.5], cond, [0, proxy.num_blocks + 3], noise)
