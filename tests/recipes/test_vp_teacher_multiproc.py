"""PixArt-nano's teacher training with its T5 trained along (``train_text_encoder``) under ``accelerate launch``
with 2 CPU processes: the T5 runs inside the DDP-wrapped module (DDP raises when a wrapped parameter gets no
gradient, or a gradient outside its forward), and the export carries the moved T5."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_sd35_flash_multiproc import REPO, _env, _free_port


@pytest.mark.multiproc
def test_pixart_teacher_with_its_t5_trains_on_two_processes(tmp_path):
    from diffusers import PixArtAlphaPipeline

    from flashdistill.shapes.vp_nano import build_vp_nano_pipeline

    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
           "--main_process_port", str(_free_port()), "-m", "flashdistill.cli", "train-teacher", "--config",
           "configs/pixart_nano_teacher.yaml", "train_text_encoder=true", f"out={tmp_path / 'out'}",
           f"train.run_dir={tmp_path / 'run'}", "pool_size=64", "batch_size=4", "train.max_steps=2",
           "train.log.samples_every=0", "train.log.progress_bar=false", "optim.lr=1e-2", "optim.warmup_steps=0"]
    proc = subprocess.run(cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    sd3_t5 = build_vp_nano_pipeline("pixart", seed=0).text_encoder.state_dict()
    out = PixArtAlphaPipeline.from_pretrained(tmp_path / "out").text_encoder.state_dict()
    assert max((v - sd3_t5[k]).abs().max().item() for k, v in out.items()) > 1e-4
    assert all(torch.isfinite(v).all() for v in out.values())
