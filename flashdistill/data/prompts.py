"""Prompt sets: a ``.jsonl`` file with one ``{"prompt": ...}`` object per line, or a ``.txt`` file with one
prompt per line (blank lines are ignored there). Problems are reported with the file and line number."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.data import Dataset

from .errors import DataError

__all__ = ["read_prompts", "PromptDataset"]


def read_prompts(path: str | Path, field: str = "prompt") -> list[str]:
    """All prompts of a ``.jsonl`` / ``.txt`` file, in order; raises :class:`DataError` naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prompt file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".txt"):
        raise DataError(
            f"{path}: prompt files must be .jsonl (a '{field}' field per line) or .txt (one per line)"
        )
    prompts = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            if suffix == ".txt":
                prompts.append(line.strip())
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.args[0]})") from None
            if not isinstance(row, dict) or field not in row:
                raise DataError(f"{path}:{lineno}: missing the '{field}' field")
            prompt = row[field]
            if not isinstance(prompt, str):
                raise DataError(f"{path}:{lineno}: '{field}' must be a string, got {type(prompt).__name__}")
            if not prompt.strip():
                raise DataError(f"{path}:{lineno}: empty prompt")
            prompts.append(prompt.strip())
    if not prompts:
        raise DataError(f"{path}: no prompts found")
    return prompts


class PromptDataset(Dataset):
    """Items ``{"prompt": str, "index": int}`` (a batch holds a list of prompts and an index tensor)."""

    def __init__(
        self, path: str | Path | None = None, prompts: list[str] | None = None, field: str = "prompt"
    ):
        if (path is None) == (prompts is None):
            raise ValueError("give either a prompt file or a list of prompts")
        if prompts is not None:
            for i, p in enumerate(prompts):
                if not isinstance(p, str) or not p.strip():
                    raise DataError(f"prompt {i} is empty or not a string: {p!r}")
        self.path = Path(path) if path is not None else None
        self.prompts = read_prompts(path, field) if path is not None else [p.strip() for p in prompts]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict:
        return {"prompt": self.prompts[i], "index": i}
