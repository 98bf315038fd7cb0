"""Flash Diffusion's CNN heads on frozen-teacher feature maps, and the SD3 adapter's token-to-map taps."""

from __future__ import annotations

import pytest
import torch

from flashdistill.models.conv_disc import ConvDisc, ConvHead, tokens_to_map
from flashdistill.models.sd3 import SD3Adapter
from flashdistill.types import Conditioning


def test_tokens_to_map_inverts_the_patch_flattening():
    grid = torch.randn(2, 5, 3, 4)  # (B, D, h, w)
    tokens = grid.flatten(2).transpose(1, 2)  # how diffusers' patch embedding lays tokens out: (B, h·w, D)
    torch.testing.assert_close(tokens_to_map(tokens, 3, 4), grid)
    with pytest.raises(ValueError, match="3x3"):
        tokens_to_map(tokens, 3, 3)


def test_heads_shapes_gradients_and_errors():
    disc = ConvDisc([6, 8], hidden=8, num_down=2, generator=torch.Generator().manual_seed(0))
    again = ConvDisc([6, 8], hidden=8, num_down=2, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(disc.state_dict().values(), again.state_dict().values()))
    feats = [torch.randn(3, 6, 8, 8, requires_grad=True), torch.randn(3, 8, 4, 4, requires_grad=True)]
    logits = disc(feats)
    assert [lg.shape for lg in logits] == [(3,), (3,)]
    sum(lg.sum() for lg in logits).backward()
    assert all(f.grad.abs().sum() > 0 for f in feats)  # the generator's gradient reaches the features
    with pytest.raises(ValueError, match="too small"):
        ConvHead(6, 8, num_down=3)(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match="2 heads"):
        disc(feats[:1])
    with pytest.raises(ValueError, match=r"\(B, D, h, w\)"):
        disc([torch.randn(3, 16, 6), feats[1]])


def test_sd3_feature_maps_are_the_image_tokens_on_their_patch_grid(tiny_pipe):
    adapter = SD3Adapter(tiny_pipe.transformer)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = Conditioning(torch.randn(2, 85, 16), torch.randn(2, 16))
    t = torch.full((2,), 0.5)
    with torch.no_grad():
        maps = adapter.feature_maps(x, t, cond, [0, 1])
        tokens = adapter.features(x, t, cond, [0, 1])
    d = tiny_pipe.transformer.config.num_attention_heads * tiny_pipe.transformer.config.attention_head_dim
    assert [m.shape for m in maps] == [(2, d, 4, 4)] * 2
    torch.testing.assert_close(maps[1].flatten(2).transpose(1, 2), tokens[1])
    with pytest.raises(ValueError, match="blocks"):
        adapter.feature_maps(x, t, cond, [7])  # a missing tap is an error, never the final output
