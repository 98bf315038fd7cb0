"""A folder of images judged as it is: ``captions.jsonl`` lines of ``{"file", "prompt"}`` beside the images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["read_captioned_images"]


def read_captioned_images(folder: Path) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """``(images (N, H, W, 3) uint8, [(line number, prompt), ...])``; errors name the file and line."""
    from PIL import Image

    captions = folder / "captions.jsonl"
    if not captions.is_file():
        raise FileNotFoundError(f"{captions}: needed to judge a folder of images (lines of {{file, prompt}})")
    images, prompts = [], []
    for n, line in enumerate(captions.read_text().splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        path = folder / item["file"]
        try:
            images.append(np.asarray(Image.open(path).convert("RGB")))
        except OSError as err:
            raise FileNotFoundError(f"{captions}:{n}: cannot read image {path} ({err})") from err
        prompts.append((n, item["prompt"]))
    return np.stack(images), prompts
