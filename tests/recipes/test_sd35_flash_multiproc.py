"""Stage 2 of SD3.5-Flash under ``accelerate launch`` with 2 CPU processes (gloo), on the tiny teacher.

Every rank must run the same collectives in the same order whatever it drew (the step index, the proxy/disc
phase, the DMD term that the last step lacks). All randomness is drawn for the *global* batch from generators
every rank shares and each rank takes its slice, so 2 processes with half the batch each see exactly the
samples, noises and timesteps of 1 process with the whole batch: averaged gradients then make the two runs
agree up to the order of floating-point sums.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from tinydata import make_tiny_data

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1")
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("mp"))


def _config(root: Path, name: str, **kw) -> Path:
    cfg = {"recipe": "sd35_flash", "stage": "dmd", "teacher": "tiny", "data": str(root / "data"),
           "out": str(root / name / "student"), "batch_size": 4, "proxy_updates": 1, "disc_blocks": [0, 1],
           "disc_hidden": 16, "student_optim": {"lr": 1e-3}, "proxy_optim": {"lr": 1e-3},
           "disc_optim": {"lr": 1e-3},
           "train": {"run_dir": str(root / name / "run"), "max_steps": 4, "overwrite": True,
                     "log": {"every": 1, "progress_bar": False, "tensorboard": False}}, **kw}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(config: Path, procs: int, out: Path) -> subprocess.Popen:
    distill = ["-m", "flashdistill.cli", "distill", "--config", str(config), f"out={out / 'student'}",
               f"train.run_dir={out / 'run'}"]
    if procs == 1:
        cmd = [sys.executable, *distill]
    else:
        accelerate = Path(sys.executable).parent / "accelerate"
        cmd = [str(accelerate), "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
               "--main_process_port", str(_free_port()), *distill]
    return subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _weights(folder: Path) -> dict:
    return load_file(str(next((folder / "student" / "transformer").glob("*.safetensors"))))


CASES = {
    "sharing_adv": {"timestep_sharing": True, "adv_weight": 0.1, "disc_refresh": 0.5},
    "sharing_no_adv": {"timestep_sharing": True, "adv_weight": 0.0},
    "split_branch": {"step_range": [0.0, 0.5], "ema_decay": 0.5, "adv_weight": 0.1, "proxy_updates": 2},
    "per_sample_steps": {"step_sampling": "per_sample", "adv_weight": 0.1, "warmup_noisier": 2},
    "stochastic_per_sample": {"sampler": "stochastic", "step_sampling": "per_sample", "adv_weight": 0.1,
                              "warmup_noisier": 2},
}


@pytest.mark.multiproc
@pytest.mark.parametrize("case", sorted(CASES))
def test_stage2_two_processes_match_one_process(tiny_data, case):
    config = _config(tiny_data, case, **CASES[case])
    one, two = tiny_data / case / "one", tiny_data / case / "two"
    procs = [_launch(config, 1, one), _launch(config, 2, two)]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read().decode()[-4000:]
    w1, w2 = _weights(one), _weights(two)
    start = _teacher_weights()
    moved = max((w1[k] - start[k]).abs().max().item() for k in w1)
    diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    print(f"\n{case}: student moved {moved:.2e} from the teacher; 2 vs 1 process max |diff| {diff:.2e}")
    assert moved > 1e-4, f"{case}: the student did not train"
    assert diff < 1e-5 * max(1.0, moved / 1e-3), f"{case}: 2 processes differ from 1 process by {diff:.2e}"


def _teacher_weights() -> dict:
    from flashdistill.models.tiny import tiny_sd3_pipeline

    return {k: v.detach().clone() for k, v in tiny_sd3_pipeline(seed=0).transformer.state_dict().items()}
