"""LoRA students share the teacher's weights; feature taps return documented shapes and stop early."""

from __future__ import annotations

import copy

import pytest
import torch

from flashdistill.models.lora import add_lora, count_parameters, merge_lora, teacher_mode
from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder


@pytest.fixture()
def batch(tiny_pipe):
    cond = SD3TextEncoder(tiny_pipe, max_sequence_length=8).encode(["a red circle", "a blue square"])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0.9, 0.3]), cond


def test_lora_disabled_is_teacher_bit_for_bit(tiny_pipe, batch):
    transformer = copy.deepcopy(tiny_pipe.transformer)
    teacher = SD3Adapter(tiny_pipe.transformer)
    with torch.no_grad():
        ref = teacher(*batch)
    add_lora(transformer, rank=4)
    with torch.no_grad():  # LoRA starts as the identity (B = 0): perturb B so the student really differs
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    student = SD3Adapter(transformer)
    n_lora = count_parameters(transformer)
    assert n_lora > 0
    assert all("lora_" in n for n, p in transformer.named_parameters() if p.requires_grad)
    assert any("attn2" in n and "lora_" in n for n, _ in transformer.named_parameters())  # dual attention too
    with torch.no_grad():
        out = student(*batch)
        with teacher_mode(transformer):
            off = student(*batch)
    assert torch.equal(off, ref)
    assert (out - ref).abs().max() > 1e-4
    # merging keeps the student's function and removes the adapter
    merge_lora(transformer)
    with torch.no_grad():
        merged = SD3Adapter(transformer)(*batch)
    assert (merged - out).abs().max() < 1e-4
    assert not any("lora_" in n for n, _ in transformer.named_parameters())


def test_feature_taps_shapes_and_early_stop(tiny_pipe, batch):
    model = SD3Adapter(tiny_pipe.transformer)
    inner = tiny_pipe.transformer.config.num_attention_heads * tiny_pipe.transformer.config.attention_head_dim
    n_tokens = (8 // 2) ** 2
    with torch.no_grad():
        full = model.features(*batch, blocks=[0, 1], stop_early=False)
        early = model.features(*batch, blocks=[0], stop_early=True)
        v, with_v = model.forward_with_features(*batch, blocks=[1])
    assert [f.shape for f in full] == [(2, n_tokens, inner)] * 2
    assert torch.equal(early[0], full[0])
    assert torch.equal(with_v[0], full[1]) and v.shape == batch[0].shape
    with pytest.raises(ValueError, match="blocks"):
        model.features(*batch, blocks=[5])


def test_early_stop_skips_later_blocks(tiny_pipe, batch):
    model = SD3Adapter(tiny_pipe.transformer)
    ran = []
    handle = tiny_pipe.transformer.transformer_blocks[1].register_forward_hook(lambda *a: ran.append(1))
    try:
        with torch.no_grad():
            model.features(*batch, blocks=[0])
    finally:
        handle.remove()
    assert ran == []
