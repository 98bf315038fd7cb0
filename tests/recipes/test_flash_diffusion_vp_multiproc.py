"""Flash Diffusion on a VP teacher (UNet-nano, random denoiser) under ``accelerate launch`` with 2 CPU processes:
the LoRA it trains equals the 1-process one (every draw is for the global batch; DDP averages the gradients). The
DDP wrapper hides the UNet's attributes; the adapter reads them from the wrapped network."""

from __future__ import annotations

import pytest
import yaml
from safetensors.torch import load_file
from test_sd35_flash_multiproc import _launch

from flashdistill.cli import main


@pytest.mark.multiproc
def test_vp_flash_diffusion_two_processes_match_one(tmp_path):
    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline
    from flashdistill.shapes.vp_teacher import VPTeacherConfig, export

    teacher = export(build_vp_nano_pipeline("unet", seed=0), VPTeacherConfig(out=str(tmp_path / "teacher")))
    assert main(["shapes-prompts", "--images", str(tmp_path / "img"), "--n", "8"]) == 0
    assert main(["generate-data", f"model={teacher}", f"images={tmp_path / 'img'}", f"out={tmp_path / 'data'}",
                 "shard_size=4", "batch_size=4"]) == 0
    cfg = {"recipe": "flash_diffusion", "teacher": str(teacher), "data": str(tmp_path / "data"),
           "out": str(tmp_path / "x"), "batch_size": 4, "K": 8, "grid_shift": None, "phase_every": 1,
           "disc_blocks": [0, 3], "disc_hidden": 8, "lora_rank": 4, "lora_alpha": 8.0, "guidance_range": [1.0, 4.0],
           "student_optim": {"lr": 1e-2}, "disc_optim": {"lr": 1e-3},
           "train": {"run_dir": str(tmp_path / "run"), "max_steps": 4, "overwrite": True,
                     "log": {"every": 1, "progress_bar": False, "tensorboard": False}}}
    config = tmp_path / "fd.yaml"
    config.write_text(yaml.safe_dump(cfg))
    one, two = tmp_path / "one", tmp_path / "two"
    procs = [_launch(config, 1, one), _launch(config, 2, two)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-4000:]
    w1, w2 = (load_file(str(d / "student" / "pytorch_lora_weights.safetensors")) for d in (one, two))
    moved = max(v.abs().max().item() for k, v in w1.items() if "lora_B" in k)  # lora_B starts at zero
    diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved > 1e-4 and diff < 1e-5 * max(1.0, moved / 1e-3), (moved, diff)
