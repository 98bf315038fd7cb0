"""The same job under ``accelerate launch`` with 2 CPU processes (gloo): it trains, every process takes part
(per-rank checkpoint state), and it agrees with the 1-process run (same global batches, averaged gradients)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from jobtools import JOB, QUIET, REPO, job_command, job_env, metrics
from safetensors.torch import load_file

# No per-process randomness (input noise/masks off), so 2 processes must reproduce 1 process up to the order
# of floating-point sums in the gradient all-reduce.
COMMON = ["train.max_steps=24", "train.log.every=1", "train.checkpoint.every=12", "input_noise=0", "mask_prob=0",
          "optim.lr=0.01", "optim.warmup_steps=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiproc
def test_two_processes_train_and_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    accelerate = Path(sys.executable).parent / "accelerate"
    launch = [str(accelerate), "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
              "--main_process_port", str(free_port()), str(JOB), f"train.run_dir={two}", *QUIET, *COMMON]
    procs = [subprocess.Popen(cmd, env=job_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for cmd in (launch, job_command(one, *COMMON))]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read().decode()[-3000:]

    assert json.loads((two / "done.json").read_text())["num_processes"] == 2
    ckpt = two / "checkpoints" / "step_00000024"
    assert (ckpt / "rank_0.pt").is_file() and (ckpt / "rank_1.pt").is_file()

    m1, m2 = metrics(one), metrics(two)
    loss1 = [m1[s]["mse"] for s in sorted(m1)]
    loss2 = [m2[s]["mse"] for s in sorted(m2)]
    first, last = sum(loss2[:6]) / 6, sum(loss2[-6:]) / 6
    assert last < 0.7 * first, f"2-process loss did not fall: first 6 steps {first:.4f}, last 6 {last:.4f}"
    assert max(abs(a - b) for a, b in zip(loss1, loss2)) < 1e-5
    w1, w2 = load_file(str(one / "final.safetensors")), load_file(str(two / "final.safetensors"))
    diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert diff < 1e-5
    print(f"\n2 processes: mse {first:.4f} (steps 1-6) -> {last:.4f} (steps 19-24); "
          f"max |loss diff| vs 1 process {max(abs(a - b) for a, b in zip(loss1, loss2)):.2e}, "
          f"max |weight diff| {diff:.2e}")
    assert torch.isfinite(torch.tensor(loss2)).all()
