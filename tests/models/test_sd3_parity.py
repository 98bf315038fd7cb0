"""Our SD3 adapter + Euler sampler + CFG wrapper reproduce StableDiffusion3Pipeline on a tiny pipeline."""

from __future__ import annotations

import pytest
import torch

from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder
from flashdistill.sampling import CFG, euler_solve

PROMPTS = ["a red circle left of a blue square", "two green triangles"]
SIGMAS = [1.0, 0.8, 0.55, 0.3, 0.1]


def _reference(pipe, noise, guidance, max_seq):
    from diffusers import StableDiffusion3Pipeline

    # a new pipeline object with a shift-1 scheduler: the session-wide tiny_pipe must not change under other tests
    scheduler = pipe.scheduler.from_config(pipe.scheduler.config, shift=1.0)
    pipe = StableDiffusion3Pipeline(**{**pipe.components, "scheduler": scheduler})
    pipe.set_progress_bar_config(disable=True)
    out = pipe(PROMPTS, latents=noise.clone(), sigmas=SIGMAS, guidance_scale=guidance, output_type="latent",
               height=16, width=16, max_sequence_length=max_seq)
    return out.images


@pytest.mark.parametrize("guidance", [1.0, 4.5])
@pytest.mark.parametrize("drop_t5", [False, True])
def test_adapter_and_euler_match_pipeline(tiny_pipe, guidance, drop_t5):
    from diffusers import StableDiffusion3Pipeline

    pipe = tiny_pipe
    if drop_t5:
        pipe = StableDiffusion3Pipeline(**{**tiny_pipe.components, "text_encoder_3": None, "tokenizer_3": None})
        pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(len(PROMPTS), 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = _reference(pipe, noise, guidance, max_seq=12)

    text = SD3TextEncoder(pipe, max_sequence_length=12)
    model = CFG(SD3Adapter(pipe.transformer), text.null(), guidance)
    ours = euler_solve(model, noise, SIGMAS + [0.0], text.encode(PROMPTS))
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-4
    assert ref.abs().mean() > 0.1  # a real signal, not two zero tensors


def test_timestep_scale_matters(tiny_pipe):
    """Passing t in 0..1 instead of 0..1000 would silently give a different velocity; we scale it."""
    text = SD3TextEncoder(tiny_pipe, max_sequence_length=8)
    cond = text.encode(PROMPTS)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.7, 0.7])
    v = SD3Adapter(tiny_pipe.transformer)(x, t, cond)
    raw = tiny_pipe.transformer(hidden_states=x, timestep=t * 1000, encoder_hidden_states=cond.prompt_embeds,
                                pooled_projections=cond.pooled, return_dict=False)[0]
    wrong = tiny_pipe.transformer(hidden_states=x, timestep=t, encoder_hidden_states=cond.prompt_embeds,
                                  pooled_projections=cond.pooled, return_dict=False)[0]
    assert torch.equal(v, raw)
    assert (v - wrong).abs().max() > 1e-3


def test_text_dropout_nulls(tiny_pipe):
    text = SD3TextEncoder(tiny_pipe, max_sequence_length=8)
    full = text.encode(PROMPTS)
    kept = text.encode_with_dropout(PROMPTS, p_drop=(0.0, 0.0, 0.0))
    assert torch.allclose(kept.prompt_embeds, full.prompt_embeds, atol=1e-6)
    assert torch.allclose(kept.pooled, full.pooled, atol=1e-6)
    no_t5 = text.encode_with_dropout(PROMPTS, p_drop=(0.0, 0.0, 1.0))
    n_clip = full.prompt_embeds.shape[1] - 8
    assert torch.all(no_t5.prompt_embeds[:, n_clip:] == 0)  # T5 slice zeroed, as diffusers does without T5
    assert torch.allclose(no_t5.prompt_embeds[:, :n_clip], full.prompt_embeds[:, :n_clip], atol=1e-6)
    no_clip = text.encode_with_dropout(PROMPTS, p_drop=(1.0, 1.0, 0.0))
    null = text.null(2)
    assert torch.allclose(no_clip.pooled, null.pooled, atol=1e-6)
