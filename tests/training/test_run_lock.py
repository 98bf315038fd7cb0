"""One writer per run folder: a second job on a folder another live process trains in is refused, naming the owner's
pid; a killed owner leaves no stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from flashdistill.config import ConfigError
from flashdistill.training import Run, TrainConfig

HOLD = ("import sys, time; from flashdistill.fsio import FolderLock; FolderLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(120)")


def test_second_process_is_refused_and_a_killed_owner_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    owner = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by another process \(pid {owner.pid}\)"):
            Run(TrainConfig(run_dir=str(run_dir), overwrite=True))
        assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1}\n'  # the refused job deleted nothing
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    run = Run(TrainConfig(run_dir=str(run_dir), overwrite=True))  # the dead owner's lock died with it
    assert (run_dir / ".lock").read_text().strip() != str(owner.pid)
    run.finish()


def test_jobs_in_one_process_run_one_after_another(tmp_path):
    first = Run(TrainConfig(run_dir=str(tmp_path / "r")))
    second = Run(TrainConfig(run_dir=str(tmp_path / "r"), overwrite=True))  # the same interpreter: takes over
    second.finish()
    first.finish()
