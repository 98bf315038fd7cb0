"""Atomic, self-checking checkpoint folders: ``<root>/step_00000100/``.

A checkpoint is written into a hidden temporary folder, every file is fsynced, a ``MANIFEST.json``
listing each file's size (and sha256) is written last, and only then is the folder renamed to its final
name (a rename is atomic on POSIX filesystems). So a crash at any moment leaves either the previous
checkpoints untouched or a complete new one; a folder whose manifest is missing or whose files do not match
it (partial copy, disk corruption) is reported and skipped by :meth:`Checkpointer.latest_valid` in favour
of the previous valid one.

This module only knows the filesystem; what goes *into* a checkpoint is :mod:`flashdistill.training.persist`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..fsio import atomic_write_text, fsync_dir

__all__ = ["Checkpointer", "MANIFEST", "fsync_dir", "atomic_write_text"]

logger = logging.getLogger("flashdistill.training")

MANIFEST = "MANIFEST.json"
_FORMAT = "flashdistill.checkpoint/1"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class Checkpointer:
    """Writes, validates, finds and prunes checkpoint folders under ``root``.

    ``keep_last``: newest checkpoints kept after each save. ``checksums``: record sha256 of every file
    (verification then reads every byte on resume; sizes are always checked).
    """

    def __init__(self, root: str | Path, keep_last: int = 3, checksums: bool = True):
        self.root = Path(root)
        self.keep_last, self.checksums = keep_last, checksums

    def path_for(self, step: int) -> Path:
        return self.root / f"step_{step:08d}"

    def tmp_path_for(self, step: int) -> Path:
        return self.root / f".tmp_step_{step:08d}"

    def all(self) -> list[tuple[int, Path]]:
        """Every finished-looking checkpoint folder, oldest first (valid or not)."""
        if not self.root.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()
        ]
        return sorted(found)

    # ------------------------------------------------------------------------------------------- writing
    def begin(self, step: int) -> Path:
        """Create an empty temporary folder for ``step`` (main process only) and return it."""
        tmp = self.tmp_path_for(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, step: int, meta: dict | None = None) -> Path:
        """Seal the temporary folder of ``step``: fsync, manifest, atomic rename, prune (main process)."""
        tmp, final = self.tmp_path_for(step), self.path_for(step)
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync_file(path)
            rel = path.relative_to(tmp).as_posix()
            entry = {"size": path.stat().st_size}
            if self.checksums:
                entry["sha256"] = _sha256(path)
            files[rel] = entry
        manifest = {"format": _FORMAT, "step": step, "time": time.time(), "files": files, "meta": meta or {}}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
        for sub in sorted({p.parent for p in tmp.rglob("*")}, key=lambda p: -len(p.parts)):
            fsync_dir(sub)
        if final.exists():  # re-saving a step (e.g. the last step after a resume): swap atomically-enough
            trash = self.root / f".trash_{final.name}_{os.getpid()}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(self.root)
        self.prune()
        return final

    def save(self, step: int, write: Callable[[Path], None], meta: dict | None = None) -> Path:
        """Single-process convenience: ``begin``, ``write(tmp_dir)``, ``commit``."""
        tmp = self.begin(step)
        write(tmp)
        return self.commit(step, meta)

    def prune(self) -> None:
        """Delete stale temporary folders and all but the newest ``keep_last`` checkpoints that look valid."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if p.name.startswith((".tmp_step_", ".trash_")) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
        ckpts = self.all()
        kept = [s for s, p in reversed(ckpts) if self.problem(p, deep=False) is None][: self.keep_last]
        if len(kept) < self.keep_last:
            return
        oldest_kept = min(kept)
        for s, p in ckpts:
            if s < oldest_kept:
                shutil.rmtree(p, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- reading
    def problem(self, path: Path, deep: bool | None = None) -> str | None:
        """``None`` if ``path`` is a complete, intact checkpoint, else what is wrong with it.

        ``deep`` (default: ``self.checksums``) also verifies sha256 where the manifest recorded one.
        """
        deep = self.checksums if deep is None else deep
        manifest_path = Path(path) / MANIFEST
        if not manifest_path.is_file():
            return "no MANIFEST.json (the save did not finish)"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            files = manifest["files"]
        except (OSError, ValueError, KeyError) as err:
            return f"unreadable MANIFEST.json ({err})"
        if manifest.get("format") != _FORMAT:
            return f"unknown checkpoint format {manifest.get('format')!r}"
        for rel, entry in files.items():
            f = Path(path) / rel
            if not f.is_file():
                return f"missing file {rel}"
            if f.stat().st_size != entry["size"]:
                return f"file {rel} has {f.stat().st_size} bytes, manifest says {entry['size']}"
            if deep and "sha256" in entry and _sha256(f) != entry["sha256"]:
                return f"file {rel} does not match its sha256 (corrupted)"
        return None

    def manifest(self, path: Path) -> dict:
        """The parsed manifest of a (valid) checkpoint."""
        return json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))

    def latest_valid(self) -> Path | None:
        """The newest checkpoint that passes :meth:`problem`; invalid newer ones are logged and skipped."""
        for step, path in reversed(self.all()):
            issue = self.problem(path)
            if issue is None:
                return path
            logger.warning("skipping checkpoint %s (step %d): %s", path, step, issue)
        return None
