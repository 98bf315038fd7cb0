"""Checkpointer: atomic folders, manifest checks (missing, truncated, corrupted files), pruning, latest valid."""

from __future__ import annotations

import json

import pytest

from flashdistill.training import Checkpointer
from flashdistill.training.checkpoint import MANIFEST


def write_files(payload: bytes):
    def write(tmp):
        (tmp / "weights.bin").write_bytes(payload)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "state.json").write_text(json.dumps({"n": len(payload)}))

    return write


@pytest.fixture
def ckpt(tmp_path):
    c = Checkpointer(tmp_path / "checkpoints", keep_last=3)
    for step in (10, 20, 30):
        c.save(step, write_files(bytes([step]) * 1000), meta={"step": step})
    return c


def test_save_is_complete_and_listed(ckpt):
    assert [s for s, _ in ckpt.all()] == [10, 20, 30]
    path = ckpt.latest_valid()
    assert path.name == "step_00000030" and ckpt.problem(path) is None
    manifest = ckpt.manifest(path)
    assert set(manifest["files"]) == {"weights.bin", "sub/state.json"} and manifest["meta"] == {"step": 30}
    assert not list(ckpt.root.glob(".tmp_*"))


def test_keeps_last_n(ckpt):
    ckpt.save(40, write_files(b"x" * 10))
    assert [s for s, _ in ckpt.all()] == [20, 30, 40]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "no_manifest", "bad_manifest"])
def test_damaged_newest_is_skipped_for_previous(ckpt, damage, caplog):
    newest = ckpt.path_for(30)
    weights = newest / "weights.bin"
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[500] ^= 1
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:10])
    elif damage == "delete":
        weights.unlink()
    elif damage == "no_manifest":
        (newest / MANIFEST).unlink()
    else:
        (newest / MANIFEST).write_text("{not json")
    assert ckpt.problem(newest) is not None
    with caplog.at_level("WARNING"):
        assert ckpt.latest_valid() == ckpt.path_for(20)
    assert "skipping checkpoint" in caplog.text and "step_00000030" in caplog.text


def test_size_only_mode_misses_a_flip_but_checksums_catch_it(ckpt):
    weights = ckpt.path_for(30) / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[0] ^= 1
    weights.write_bytes(bytes(data))
    assert ckpt.problem(ckpt.path_for(30), deep=False) is None
    assert "sha256" in ckpt.problem(ckpt.path_for(30), deep=True)


def test_interrupted_save_leaves_previous_valid_and_is_cleaned(ckpt):
    def crash(tmp):
        (tmp / "weights.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ckpt.save(40, crash)
    assert ckpt.latest_valid() == ckpt.path_for(30)  # the temp folder is not a checkpoint
    assert (ckpt.root / ".tmp_step_00000040").exists()
    ckpt.save(50, write_files(b"y"))
    assert not (ckpt.root / ".tmp_step_00000040").exists()


def test_resaving_a_step_replaces_it(ckpt):
    ckpt.save(30, write_files(b"new"))
    assert (ckpt.path_for(30) / "weights.bin").read_bytes() == b"new"
    assert ckpt.problem(ckpt.path_for(30)) is None
