"""Exact resume: a job really killed with SIGKILL and resumed reproduces an uninterrupted run bit for bit
(losses of every step and final weights), and damaged checkpoints are skipped for the previous valid one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch
from jobtools import job_command, job_env, metrics, run_job
from safetensors.torch import load_file

# Two trained models, EMA, accumulation, input noise (global RNG), masks (named generator), data epochs of 6
# steps, checkpoints every 4 steps: every piece of state matters for exactness here.
COMMON = ["train.max_steps=30", "train.checkpoint.every=4", "train.checkpoint.keep_last=3", "train.log.every=1",
          "train.gradient_accumulation=2"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, started in the background so it overlaps with the killed one."""
    ref = tmp_path_factory.mktemp("ref")
    proc = subprocess.Popen(job_command(ref, *COMMON), env=job_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def finished():
        assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-2000:]
        return ref

    yield finished
    proc.kill()
    proc.wait()


def assert_same_weights(a, b):
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, reference):
    victim = tmp_path / "victim"
    proc = subprocess.Popen(job_command(victim, *COMMON, "sleep=0.05"), env=job_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            rows = metrics(victim) if (victim / "metrics.jsonl").exists() else {}
            if rows and max(rows) >= 13:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # a real kill: no exception, no cleanup, maybe mid-checkpoint
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (victim / "done.json").exists(), "the job finished before it could be killed"
    before = metrics(victim)
    killed_after = max(before)

    run_job(victim, *COMMON, "train.resume=true")
    done = json.loads((victim / "done.json").read_text())
    resumed_step = int(done["resumed_from"].rsplit("_", 1)[1])
    assert 12 <= resumed_step <= killed_after and resumed_step % 4 == 0

    ref = reference()
    expected, after = metrics(ref), metrics(victim)
    assert sorted(after) == list(range(1, 31))  # no step lost or logged twice
    assert after == expected  # every logged value of every step, exactly
    assert before == {s: expected[s] for s in before}  # including the steps replayed after the kill
    assert_same_weights(ref, victim)
    print(f"\nkilled after step {killed_after}, resumed from step {resumed_step}; "
          f"30/30 steps and all weights identical to the uninterrupted run")


def test_corrupted_and_partial_checkpoints_are_skipped(tmp_path, reference):
    ref = reference()
    damaged = tmp_path / "damaged"
    shutil.copytree(ref, damaged)
    for name in ("final.safetensors", "done.json"):
        (damaged / name).unlink()
    ckpts = damaged / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000024", "step_00000028", "step_00000030"]
    weights = ckpts / "step_00000030" / "model.safetensors"  # newest: one flipped byte, same size
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    state = ckpts / "step_00000028" / "optimizer.bin"  # next: cut short, as by a partial copy
    state.write_bytes(state.read_bytes()[:100])
    (ckpts / ".tmp_step_00000032").mkdir()  # and a save that never finished

    run_job(damaged, *COMMON, "train.resume=true")
    done = json.loads((damaged / "done.json").read_text())
    assert done["resumed_from"].endswith("step_00000024")
    assert metrics(damaged) == metrics(ref)
    assert_same_weights(ref, damaged)
