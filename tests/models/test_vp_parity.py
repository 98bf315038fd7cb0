"""The VP adapters on the flow path against the stock pipelines: ``StableDiffusionPipeline`` and
``PixArtAlphaPipeline`` (DDIM, "trailing" spacing) on the same noise and timesteps, the ends of the schedule,
the Flash Diffusion mode mapping and PixArt's micro-conditions."""

from __future__ import annotations

import pytest
import torch

from flashdistill.models.backbones import adapter_for, text_encoder_for
from flashdistill.models.tiny import tiny_pixart, tiny_unet
from flashdistill.models.vp import PixArtAdapter, UNetAdapter
from flashdistill.sampling import CFG, euler_solve
from flashdistill.shapes.vp_nano import build_vp_nano_pipeline
from flashdistill.types import Conditioning


@pytest.fixture(scope="module", params=["unet", "pixart", "pixart_v", "sdxl"])
def pipe(request):
    if request.param == "sdxl":
        from flashdistill.models.tiny import tiny_sdxl_pipeline

        return tiny_sdxl_pipeline(seed=0)  # pooled text, size conditions, zeros as the unconditional
    if request.param == "pixart_v":  # PixArt-nano's v-prediction (its scheduler says so; the adapter reads it)
        return build_vp_nano_pipeline("pixart", seed=0, prediction_type="v_prediction")
    return build_vp_nano_pipeline(request.param, seed=0)  # random denoiser, SD3-nano's VAE and text encoder


def _stock_latents(pipe, prompts, steps, guidance, latents):
    kwargs = dict(num_inference_steps=steps, guidance_scale=guidance, latents=latents.clone(), output_type="latent")
    if hasattr(pipe, "transformer"):
        kwargs.update(max_sequence_length=16, use_resolution_binning=False, clean_caption=False)
    return pipe(prompt=prompts, **kwargs).images


# step counts that divide 1000: DDIM steps from index i to i - 1000 // N, which for other N (12: 916 -> 833) is not
# the next "trailing" timestep (832); our Euler follows the listed timesteps
@pytest.mark.parametrize("steps,guidance", [(4, 1.0), (4, 3.0), (2, 3.0), (1, 1.0), (20, 2.0)])
def test_adapter_euler_equals_stock_pipeline_trailing_ddim(pipe, steps, guidance):
    prompts = ["a red circle", "two blue squares"]
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    stock = _stock_latents(pipe, prompts, steps, guidance, latents)
    model = adapter_for(pipe)
    grid = model.trailing_grid(steps)
    text = text_encoder_for(pipe, 16)
    start = grid[0].item()  # index 999's flow time; the VP point x_vp is the flow point x_vp·sqrt((1-t)² + t²)
    x = latents * ((1 - start) ** 2 + start**2) ** 0.5
    ours = euler_solve(CFG(model, text.null(), guidance), x, grid, text.encode(prompts))
    torch.testing.assert_close(ours, stock, rtol=1e-3, atol=1e-3)  # fp32 grid times: tau 998.9999 vs 999


def test_flash_modes_are_fractions_of_the_ddpm_index_range():
    from flashdistill.timesteps import FlashMixture

    unet, scheduler = tiny_unet()  # SD1.5's scaled-linear schedule
    model = UNetAdapter.from_scheduler(unet, scheduler)
    modes = model.flow_time_of_fraction(torch.tensor([0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(modes, model.flow_times()[[249, 499, 749, 999]])
    assert [round(m, 2) for m in modes.tolist()] == [0.41, 0.62, 0.80, 0.94]  # the values the issue states
    mixture = FlashMixture(32, to_flow=model.flow_time_of_fraction)
    assert mixture.timesteps[-1].item() == pytest.approx(modes[-1].item())
    assert mixture.timesteps[7].item() == pytest.approx(modes[0].item())  # j = K/4
    torch.testing.assert_close(model.trailing_grid(4)[:-1], modes.flip(0))  # the 4 inference steps are the modes


def test_pixart_micro_conditions_as_the_pipeline_builds_them():
    from diffusers import PixArtTransformer2DModel

    _, scheduler = tiny_pixart()
    torch.manual_seed(0)
    net = PixArtTransformer2DModel(
        sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=16,
        in_channels=4, out_channels=4, cross_attention_dim=24, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=True).eval()
    model = PixArtAdapter.from_scheduler(net, scheduler, vae_scale_factor=8)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = Conditioning(torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1)))
    t = torch.full((2,), 0.5)
    with torch.no_grad():
        v = model(x, t, cond)
        given = Conditioning(cond.prompt_embeds, extra={"resolution": torch.tensor([[64.0, 64.0]] * 2),
                                                        "aspect_ratio": torch.tensor([[1.0]] * 2)})
        other = Conditioning(cond.prompt_embeds, extra={"resolution": torch.tensor([[1024.0, 512.0]] * 2),
                                                        "aspect_ratio": torch.tensor([[2.0]] * 2)})
        torch.testing.assert_close(model(x, t, given), v)  # 8 latent px × 8 = 64 px, square
        assert not torch.allclose(model(x, t, other), v)  # the conditions reach the network
    assert torch.isfinite(v).all()
