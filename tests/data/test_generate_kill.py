"""``generate-data`` really killed with SIGKILL in the middle of a shard and started again writes the same dataset,
byte for byte, as an uninterrupted run (the trainer's kill test has its counterpart here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def _command(prompts: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "flashdistill.cli", "generate-data", "--model", "tiny", "--prompts", str(prompts),
            "--out", str(out), "--steps", "120", "--guidance", "3", "--trajectory-grid", "1,0.5,0",
            "--resolution", "16", "--max-sequence-length", "8", "--shard-size", "3", "--batch-size", "1"]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sigkill_mid_shard_then_rerun_is_byte_identical(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a {c} {s}\n" for c in ("red", "blue", "green") for s in ("circle", "square",
                                                                                          "triangle", "cross")))
    victim = tmp_path / "victim"
    proc = subprocess.Popen(_command(prompts, victim), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (victim / "shard_00001.safetensors").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.01)
        time.sleep(0.3)  # well inside the next shard's work
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (victim / "index.json").exists(), "generate-data finished before it could be killed"
    done_before = sorted(p.name for p in victim.glob("shard_*.safetensors"))
    assert done_before and len(done_before) < 4

    for out in (victim, tmp_path / "reference"):
        finished = subprocess.run(_command(prompts, out), env=_env(), capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
    victim_files, reference_files = _files(victim), _files(tmp_path / "reference")
    assert sorted(victim_files) == sorted(reference_files)  # no leftover temporary files either
    for name, data in reference_files.items():
        assert victim_files[name] == data, f"{name} differs after the kill and restart"
    print(f"\nkilled with {done_before} written; after the restart all {len(reference_files)} files are identical")
