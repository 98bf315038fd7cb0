"""Helpers for the trainer tests: run the tiny MLP job (``mlp_job.py``) as a real subprocess, read its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
JOB = HERE / "mlp_job.py"
QUIET = ["train.log.progress_bar=false", "train.log.tensorboard=false"]


def job_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    env.pop("WORLD_SIZE", None)
    return env


def job_command(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(JOB), f"train.run_dir={run_dir}", *QUIET, *overrides]


def run_job(run_dir: Path, *overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the MLP job to completion in a fresh Python process; fails the test with its stderr otherwise."""
    proc = subprocess.run(job_command(run_dir, *overrides), env=job_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics(run_dir: Path) -> dict[int, dict]:
    """metrics.jsonl rows by step, without the wall-clock fields."""
    rows = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = {k: v for k, v in row.items() if k not in ("time", "steps_per_s")}
    return rows
