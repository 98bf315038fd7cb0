"""Training cost of each recipe stage: seconds per iteration and peak memory, with gradient checkpointing on and off.

Each (stage, checkpointing) pair runs the stage's shipped YAML for a few iterations in a fresh process
(``flashdistill distill``, every step logged): seconds per iteration come from the run's own ``metrics.jsonl``
after the first ``warmup`` iterations; peak memory is the child's peak resident set on the CPU (``wait4``'s
``ru_maxrss``) or ``max_memory_allocated`` on CUDA (the child writes it on exit).

:mod:`flashdistill.bench.passes` adds the ratio of a stage-2 iteration to its network passes timed alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..assets_paths import CONFIGS as SHIPPED_CONFIGS
from ..config import ConfigError

__all__ = ["Stage", "stages", "stage_cost", "CONFIGS"]

CONFIGS = SHIPPED_CONFIGS


@dataclass
class Stage:
    label: str
    config: Path
    overrides: list[str]
    cycle: int = 1  # iterations in one repeating pattern (stage 2: a generator update every proxy_updates)


def stages(teacher: Path, data: Path, student4: Path, flash_data: Path | None) -> list[Stage]:
    """The SD3.5-Flash stages on the given teacher data and 4-step student, and Flash Diffusion on real data (the
    caller has checked that the folders exist)."""
    root = CONFIGS
    common = [f"teacher={teacher}", f"data={data}"]
    out = [Stage("SD3.5-Flash stage 1 (trajectory guidance)", root / "sd35_flash" / "nano_pretrain.yaml", common),
           Stage("SD3.5-Flash stage 2 (DMD + adversarial)", root / "sd35_flash" / "nano_dmd.yaml",
                 [*common, f"init_student={student4}"], cycle=5),
           Stage("SD3.5-Flash 2-step (DMD + adversarial + gram)", root / "sd35_flash" / "nano_2step.yaml",
                 [*common, f"init_student={student4}"], cycle=5)]
    if flash_data is not None:
        out.append(Stage("Flash Diffusion (LoRA, distil + LSGAN + DMD)", root / "flash_diffusion" / "nano.yaml",
                         [f"teacher={teacher}", f"data={flash_data}", "phase_every=1"], cycle=1))
    return out


_CHILD = """
import json, sys
import torch
from flashdistill.cli import main
rc = main(sys.argv[2:])
peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
open(sys.argv[1], "w").write(json.dumps({"cuda_peak_mb": peak}))
sys.exit(rc)
"""


def stage_cost(stage: Stage, work: Path, checkpointing: bool, iters: int, warmup: int = 2) -> dict:
    """Run ``stage`` for ``warmup + iters`` iterations; ``iters`` is rounded up to whole cycles."""
    iters = -(-iters // stage.cycle) * stage.cycle
    total = warmup + iters
    tag = "".join(c if c.isalnum() else "_" for c in stage.label.split("(")[0].strip().lower())
    run_dir = work / f"{tag}_{'ckpt' if checkpointing else 'plain'}"
    overrides = [*stage.overrides, f"out={run_dir / 'student'}", f"train.run_dir={run_dir / 'run'}",
                 f"train.max_steps={total}", "train.log.every=1", "train.log.progress_bar=false",
                 "train.log.tensorboard=false", "train.overwrite=true", f"train.checkpoint.every={total + 1}",
                 f"train.gradient_checkpointing={'true' if checkpointing else 'false'}"]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "log.txt"
    info = run_dir / "child.json"
    cmd = [sys.executable, "-c", _CHILD, str(info), "distill", "--config", str(stage.config), *overrides]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if proc.returncode != 0:
        tail = log.read_text()[-1500:]
        raise ConfigError(f"bench: {stage.label} failed (exit {proc.returncode}); log {log}:\n{tail}")
    times = {}
    for line in (run_dir / "run" / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        times[int(row["step"])] = float(row["time"])
    if warmup not in times or total not in times:
        raise ConfigError(f"bench: {run_dir / 'run' / 'metrics.jsonl'} lacks steps {warmup} and {total}")
    child = json.loads(info.read_text()) if info.exists() else {}
    rss = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return {"stage": stage.label, "gradient_checkpointing": checkpointing, "iterations_timed": iters,
            "seconds_per_iteration": (times[total] - times[warmup]) / iters, "peak_rss_mb": rss,
            "cuda_peak_mb": child.get("cuda_peak_mb"), "config": str(stage.config), "overrides": overrides}
