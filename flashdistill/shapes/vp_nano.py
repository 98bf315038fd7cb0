"""UNet-nano and PixArt-nano: the variance-preserving teachers of the Shapes world, as genuine diffusers pipelines.

Both reuse what SD3-nano already learned, so that only the denoiser trains:

* the VAE (SD3-nano's ``AutoencoderKL``; its ``shift_factor`` is dropped because ``StableDiffusionPipeline`` and
  ``PixArtAlphaPipeline`` decode ``latents / scaling_factor`` with no shift: the denoiser learns the offset);
* **UNet-nano** (``StableDiffusionPipeline``, SD1.5 layout): SD3-nano's first CLIP text encoder as a
  ``CLIPTextModel`` cut after the layer SD3 reads (its penultimate, ``hidden_states[-2]``), so the UNet's
  ``last_hidden_state`` is that layer through the final layer norm; a ``UNet2DConditionModel`` of three levels
  (32/64/128 channels, cross-attention at 16×16 and 8×8 and in the mid block); SD1.5's scaled-linear schedule and
  epsilon prediction;
* **PixArt-nano** (``PixArtAlphaPipeline``): SD3-nano's T5 encoder, read with its attention mask as PixArt does; a
  ``PixArtTransformer2DModel`` of 6 blocks, width 128, patch 2; PixArt-α's linear schedule and epsilon prediction.

Schedulers are written as ``DDIMScheduler`` with ``"trailing"`` spacing and ``set_alpha_to_one``, so a stock
pipeline call at N steps is the same deterministic solver as our flow-path Euler on the matching grid.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..assets_paths import ASSETS

__all__ = ["BACKBONES", "SCHEDULES", "vp_teacher_path", "build_vp_nano_pipeline", "ddim_scheduler"]

BACKBONES = ("unet", "pixart")
# DDPM schedules of the genuine models: SD1.5 / SDXL (scaled linear) and PixArt-α (linear)
SCHEDULES = {
    "unet": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "pixart": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
}


def vp_teacher_path(backbone: str) -> Path:
    """Folder of a shipped VP teacher (``unet-nano`` or ``pixart-nano``)."""
    path = ASSETS / f"{backbone}-nano"
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"the {backbone}-nano teacher is missing at {path}; train it with "
                                f"`flashdistill train-teacher --config configs/{backbone}_nano_teacher.yaml`")
    return path


def ddim_scheduler(backbone: str, prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, **SCHEDULES[backbone], prediction_type=prediction_type,
                         clip_sample=False, set_alpha_to_one=True, steps_offset=1, timestep_spacing="trailing")


def _unet(cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=(1, 2, 4), norm_num_groups=16,
    )


def _pixart(caption_channels: int, layers: int = 6, heads: int = 4):
    """PixArt-nano's denoiser: ``layers`` blocks of ``heads`` attention heads of width 32 (the cross-attention
    reads the caption projected to the same width)."""
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        sample_size=16, num_layers=layers, patch_size=2, attention_head_dim=32, num_attention_heads=heads,
        caption_channels=caption_channels, in_channels=4, out_channels=4, cross_attention_dim=32 * heads,
        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False,
    )


def _clip_cut(src, layers: int):
    """``src`` (a ``CLIPTextModelWithProjection``) as a ``CLIPTextModel`` keeping its first ``layers`` layers."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(**{**src.config.to_dict(), "num_hidden_layers": layers})
    model = CLIPTextModel(cfg)
    wanted = model.state_dict().keys()  # with or without the "text_model." prefix, by transformers version
    state = {}
    for key, value in src.state_dict().items():
        bare = key.removeprefix("text_model.")
        for name in (key, bare):
            if name in wanted:
                state[name] = value
    model.load_state_dict(state)  # strict: every kept layer, embedding and the final norm are copied
    return model.eval()


def build_vp_nano_pipeline(backbone: str, seed: int = 0, sd3_teacher: str | Path | None = None,
                           prediction_type: str = "epsilon", pixart_size: tuple[int, int] = (6, 4)):
    """A fresh UNet-nano / PixArt-nano pipeline: random denoiser, frozen parts copied from the SD3-nano teacher; its
    DDIM scheduler says what the denoiser predicts (``epsilon`` as the genuine models, or ``v_prediction``);
    ``pixart_size`` is PixArt-nano's (blocks, attention heads): the default (6, 4) is the smaller model the tests
    build; the shipped teacher is (6, 6), ``VPTeacherConfig``'s defaults, which ``train-teacher`` passes."""
    from diffusers import AutoencoderKL, PixArtAlphaPipeline, StableDiffusionPipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel, T5Tokenizer

    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    src = Path(sd3_teacher) if sd3_teacher else ASSETS / "sd3-nano"
    vae = AutoencoderKL.from_pretrained(src, subfolder="vae")
    vae.register_to_config(shift_factor=None)
    torch.manual_seed(seed)
    if backbone == "unet":
        clip = CLIPTextModelWithProjection.from_pretrained(src, subfolder="text_encoder")
        text_encoder = _clip_cut(clip, clip.config.num_hidden_layers - 1)
        tokenizer = CLIPTokenizer.from_pretrained(src, subfolder="tokenizer")
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=_unet(text_encoder.config.hidden_size),
            scheduler=ddim_scheduler("unet", prediction_type), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    else:
        t5 = T5EncoderModel.from_pretrained(src, subfolder="text_encoder_3").eval()
        tokenizer = T5Tokenizer.from_pretrained(src, subfolder="tokenizer_3")
        pipe = PixArtAlphaPipeline(tokenizer=tokenizer, text_encoder=t5, vae=vae,
                                   transformer=_pixart(t5.config.d_model, *pixart_size),
                                   scheduler=ddim_scheduler("pixart", prediction_type))
    for module in (pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
