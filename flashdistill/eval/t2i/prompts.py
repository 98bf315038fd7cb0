"""Prompt files for evaluation: one prompt per line, COCO captions JSON, or GenEval's ``evaluation_metadata.jsonl``
(one JSON object per line with ``prompt``, ``tag`` and ``include``; the object is kept for the GenEval layout)."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import DataError

__all__ = ["EvalPrompt", "read_eval_prompts"]


class EvalPrompt(dict):
    """``{"prompt": str, ...}``: the prompt and, for GenEval files, the rest of its metadata line."""

    @property
    def text(self) -> str:
        return self["prompt"]


def read_eval_prompts(path: str | Path, limit: int | None = None) -> list[EvalPrompt]:
    """The prompts of ``path`` (format from its content); errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--prompts {path}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    try:
        whole = json.loads(text) if stripped.startswith("{") else None
    except json.JSONDecodeError:
        whole = None  # several lines of JSON: GenEval's metadata
    if path.suffix == ".json" or (isinstance(whole, dict) and "annotations" in whole):  # COCO captions
        if not isinstance(whole, dict) or not isinstance(whole.get("annotations"), list):
            raise DataError(f"{path}: a .json prompt file must be COCO captions "
                            "({'annotations': [{'caption': ...}, ...]})")
        out = [EvalPrompt(prompt=str(a.get("caption", "")).strip(), image_id=a.get("image_id"))
               for a in whole["annotations"] if isinstance(a, dict)]
    elif stripped.startswith("{"):  # JSON lines: GenEval metadata
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: not a JSON object ({err})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise DataError(f"{path}:{n}: a JSON-lines prompt file needs a \"prompt\" string on every line")
            out.append(EvalPrompt(item))
    else:
        out = [EvalPrompt(prompt=line.strip()) for line in text.splitlines() if line.strip()]
    out = [p for p in out if p.text]
    if not out:
        raise DataError(f"--prompts {path}: no prompts in it")
    return out[:limit] if limit else out
