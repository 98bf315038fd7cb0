"""Offline factory for SD3-family pipelines of any size, built from the genuine diffusers/transformers classes.

Used at two sizes: ``TINY`` (random weights, for tests, seconds to build) and the SD3-nano teacher of the
miniature world (see :mod:`flashdistill.shapes.nano`). Nothing is downloaded: tokenizers are built in memory
(:mod:`flashdistill.models.tokenizers`) and every model from a config object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .tokenizers import build_clip_tokenizer, build_t5_tokenizer

__all__ = ["SD3Spec", "TINY", "build_sd3_pipeline", "tiny_sd3_pipeline", "tiny_unet", "tiny_pixart"]


@dataclass(frozen=True)
class SD3Spec:
    """Sizes of an SD3-family pipeline. Shape rules: pooled dim = clip_proj·2, CLIP widths ≤ t5_dim."""

    image_size: int = 16  # pixels
    vae_channels: tuple[int, ...] = (8, 16)  # one entry per VAE level; latent side = image_size / 2^(n-1)
    vae_layers: int = 1  # resnet layers per VAE level
    latent_channels: int = 4
    layers: int = 2  # transformer blocks
    heads: int = 2
    head_dim: int = 8
    dual_attention_layers: tuple[int, ...] = (0,)  # SD3.5-style blocks with a second self-attention
    qk_norm: str | None = "rms_norm"
    patch_size: int = 2
    clip_dim: int = 8  # hidden width of each CLIP encoder
    clip_layers: int = 1
    clip_proj: int = 8  # projection (pooled) width of each CLIP encoder
    clip_max_length: int = 77  # CLIP token length (the pipeline reads it from the tokenizer)
    t5_dim: int = 16  # T5 d_model == joint_attention_dim
    t5_layers: int = 1
    t5_ff: int = 32
    scaling_factor: float = 1.5305  # SD3.5's VAE factors; the teacher trainer recomputes them from data
    shift_factor: float = 0.0609
    scheduler_shift: float = 3.0
    words: tuple[str, ...] = field(default_factory=tuple)  # whole-word tokens for both tokenizers

    def to_dict(self) -> dict:
        return asdict(self)


TINY = SD3Spec()


def _clip(spec: SD3Spec, vocab_size: int, eos_id: int, pad_id: int, bos_id: int):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=spec.clip_dim, intermediate_size=spec.clip_dim * 4,
        projection_dim=spec.clip_proj, num_hidden_layers=max(spec.clip_layers, 2), num_attention_heads=2,
        max_position_embeddings=spec.clip_max_length, hidden_act="gelu",
        eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=bos_id,
    )
    return CLIPTextModelWithProjection(cfg)


def build_sd3_pipeline(spec: SD3Spec = TINY, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A complete ``StableDiffusion3Pipeline`` (2 CLIP, T5, VAE, transformer, tokenizers) with random weights."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import T5Config, T5EncoderModel

    if 2 * spec.clip_dim > spec.t5_dim:
        raise ValueError(f"the two CLIP widths ({spec.clip_dim}·2) must fit in the T5 width {spec.t5_dim}")
    torch.manual_seed(seed)
    tok = build_clip_tokenizer(spec.words, spec.clip_max_length)
    tok2 = build_clip_tokenizer(spec.words, spec.clip_max_length)
    ids = dict(eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, bos_id=tok.bos_token_id)
    text_encoder = _clip(spec, len(tok), **ids)
    text_encoder_2 = _clip(spec, len(tok2), **ids)
    tok3 = build_t5_tokenizer(spec.words)
    t5_cfg = T5Config(
        vocab_size=len(tok3), d_model=spec.t5_dim, d_kv=spec.t5_dim // 2, d_ff=spec.t5_ff,
        num_layers=spec.t5_layers, num_heads=2, relative_attention_num_buckets=8,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False,
    )
    text_encoder_3 = T5EncoderModel(t5_cfg)
    n = len(spec.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=spec.vae_channels,
        layers_per_block=spec.vae_layers, latent_channels=spec.latent_channels,
        norm_num_groups=min(8, spec.vae_channels[0]), sample_size=spec.image_size,
        scaling_factor=spec.scaling_factor, shift_factor=spec.shift_factor,
        use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False,
    )
    latent_side = spec.image_size // 2 ** (n - 1)
    transformer = SD3Transformer2DModel(
        sample_size=latent_side, patch_size=spec.patch_size, in_channels=spec.latent_channels,
        num_layers=spec.layers, attention_head_dim=spec.head_dim, num_attention_heads=spec.heads,
        joint_attention_dim=spec.t5_dim, caption_projection_dim=spec.heads * spec.head_dim,
        pooled_projection_dim=2 * spec.clip_proj, out_channels=spec.latent_channels,
        pos_embed_max_size=max(latent_side // spec.patch_size, 8),
        dual_attention_layers=tuple(spec.dual_attention_layers), qk_norm=spec.qk_norm,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=spec.scheduler_shift)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae,
        text_encoder=text_encoder, tokenizer=tok, text_encoder_2=text_encoder_2, tokenizer_2=tok2,
        text_encoder_3=text_encoder_3, tokenizer_3=tok3,
    )
    for module in (transformer, vae, text_encoder, text_encoder_2, text_encoder_3):
        module.eval()  # built from configs, they start in train mode (T5 has dropout), unlike from_pretrained
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def tiny_sd3_pipeline(seed: int = 0, **overrides):
    """The test-sized pipeline (16×16 images, 8×8×4 latents, 2 blocks). Builds in about a second."""
    spec = SD3Spec(**{**TINY.to_dict(), **overrides}) if overrides else TINY
    return build_sd3_pipeline(spec, seed=seed)


def tiny_unet(prediction_type: str = "epsilon", seed: int = 0, cross_attention_dim: int = 16):
    """A tiny ``UNet2DConditionModel`` (SD1.5 layout) and its DDPM scheduler, random weights."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
        attention_head_dim=4, norm_num_groups=8,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type)
    return unet, scheduler


def tiny_pixart(seed: int = 0, caption_channels: int = 16):
    """A tiny ``PixArtTransformer2DModel`` (epsilon prediction, no learned sigma) and its DDPM scheduler."""
    from diffusers import DDPMScheduler, PixArtTransformer2DModel

    torch.manual_seed(seed)
    model = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2,
        caption_channels=caption_channels, in_channels=4, out_channels=4, cross_attention_dim=16,
        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    )
    scheduler = DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    return model, scheduler


def tiny_sdxl_pipeline(seed: int = 0):
    """A tiny ``StableDiffusionXLPipeline`` (two CLIPs, a text-time UNet, 32-px images, trailing DDIM), random."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tok, tok2 = build_clip_tokenizer((), 16), build_clip_tokenizer((), 16)
    ids = dict(vocab_size=len(tok), max_position_embeddings=16, num_attention_heads=2, intermediate_size=32,
               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    te = CLIPTextModel(CLIPTextConfig(hidden_size=8, num_hidden_layers=2, **ids))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=8, num_hidden_layers=2, projection_dim=8, **ids))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=4 * 6 + 8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=8, sample_size=32)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=True, steps_offset=1, timestep_spacing="trailing")
    pipe = StableDiffusionXLPipeline(vae=vae.eval(), text_encoder=te.eval(), text_encoder_2=te2.eval(), tokenizer=tok,
                                     tokenizer_2=tok2, unet=unet.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
