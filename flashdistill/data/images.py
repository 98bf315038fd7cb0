"""Image–caption pairs: a folder of images plus a ``captions.jsonl`` whose lines are
``{"file": "relative/path.png", "prompt": "..."}``. Every line is checked when the dataset is opened (JSON,
fields, non-empty prompt, file present and, with ``verify``, decodable), so errors surface before training
starts and name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .errors import DataError

__all__ = ["ImageCaptionDataset", "load_image"]


def load_image(path: Path, resolution: int | None = None) -> torch.Tensor:
    """RGB ``(3, H, W)`` in [-1, 1]; with ``resolution``: shorter side resized, centre-cropped square."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"unreadable image {path}: {err}") from None
    if resolution is not None:
        w, h = im.size
        s = resolution / min(w, h)
        im = im.resize((max(resolution, round(w * s)), max(resolution, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
    return x.float() / 127.5 - 1.0


class ImageCaptionDataset(Dataset):
    """Items ``{"image": (3, H, W) in [-1, 1], "prompt": str, "file": str, "index": int}``.

    Without ``resolution`` all images must have the same size (checked when batching, naming the file).
    """

    def __init__(
        self,
        root: str | Path,
        captions: str = "captions.jsonl",
        resolution: int | None = None,
        verify: bool = True,
    ):
        self.root, self.resolution = Path(root), resolution
        index = self.root / captions
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        if not index.is_file():
            raise DataError(
                f"caption file not found: {index} (expected lines like "
                '{"file": "img_000.png", "prompt": "a red circle"})'
            )
        self.items: list[tuple[str, str]] = []
        with open(index, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    self.items.append(self._parse(index, lineno, line, verify))
        if not self.items:
            raise DataError(f"{index}: no image-caption pairs found")

    def _parse(self, index: Path, lineno: int, line: str, verify: bool) -> tuple[str, str]:
        where = f"{index}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DataError(f"{where}: not valid JSON ({err.args[0]})") from None
        for key in ("file", "prompt"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str):
                raise DataError(f"{where}: needs a string field '{key}'")
        if not row["prompt"].strip():
            raise DataError(f"{where}: empty prompt for {row['file']}")
        path = self.root / row["file"]
        if not path.is_file():
            raise DataError(f"{where}: image file not found: {path}")
        if verify:
            try:
                with Image.open(path) as im:
                    im.verify()
            except (OSError, UnidentifiedImageError, SyntaxError) as err:
                raise DataError(f"{where}: unreadable image {path}: {err}") from None
        return row["file"], row["prompt"].strip()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        file, prompt = self.items[i]
        return {
            "image": load_image(self.root / file, self.resolution),
            "prompt": prompt,
            "file": file,
            "index": i,
        }
