"""Timesteps reach an SD3 transformer in fp32 on the 0..1000 scale, whatever the model's dtype, as diffusers' own
pipeline passes them (a bf16 cast would turn t = 0.75 into 752)."""

from __future__ import annotations

import copy

import pytest
import torch

from flashdistill.models.sd3 import SD3Adapter, SD3TextEncoder


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_time_proj_sees_fp32_sigma_times_1000(tiny_pipe, dtype):
    net = copy.deepcopy(tiny_pipe.transformer).to(dtype)
    seen = []
    hook = net.time_text_embed.time_proj.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    cond = SD3TextEncoder(tiny_pipe, 8).encode(["a red circle", "a blue square"])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        SD3Adapter(net)(x, torch.tensor([0.75, 0.123456]), cond)
    hook.remove()
    assert seen and seen[0].dtype == torch.float32
    torch.testing.assert_close(seen[0], torch.tensor([750.0, 123.456]), rtol=0, atol=1e-4)
