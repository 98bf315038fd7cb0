"""Metrics over generated images, each its own module behind one small interface (:class:`Metric`):
``add(images, prompts)`` with uint8 images ``(N, H, W, 3)``, then ``result()`` -> a dict of numbers. Weights are
local paths; nothing is downloaded.

* :class:`FID`: torchmetrics' ``FrechetInceptionDistance`` (the field's standard implementation, the same maths as
  torch-fidelity / clean-fid on the same features) against a reference image folder. Features: the standard
  InceptionV3 from a local torch-fidelity weight file (``--fid-inception``, needs ``torch-fidelity``), or any
  feature network mapping uint8 ``(N, 3, H, W)`` to ``(N, D)`` saved with ``torch.export.save`` (``.pt2``; a legacy
  TorchScript file is accepted too) (``--fid-features``). FID is a statistic of the whole set, not a mean, so it
  carries no bootstrap interval.
* :class:`CLIPScore`: ``100 · max(cos(image, text), 0)`` per image with a transformers ``CLIPModel`` from a local
  folder (torchmetrics' definition; computed here per image because the interval needs the per-image values), mean
  with a 95% bootstrap interval. ViT-B/32 for SD3.5-Flash's column, any CLIP (e.g. an OpenCLIP-G conversion) for
  Flash Diffusion's.
* :class:`PickScore`: Kirstain et al.'s human-preference score, ``logit_scale · cos(image, text)`` with the
  PickScore_v1 CLIP (a transformers ``CLIPModel`` folder with its processor), mean with a bootstrap interval.
  ImageReward and HPSv2 need their own packages and model code and are not wired in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError

__all__ = ["Metric", "bootstrap_mean", "read_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def bootstrap_mean(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: percentile bootstrap 95% interval of the mean of per-image values."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def read_image_folder(folder: str | Path, limit: int | None = None):
    """Yield uint8 ``(H, W, 3)`` arrays of every image file under ``folder`` (sorted)."""
    from PIL import Image

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--reference {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    for path in files[:limit] if limit else files:
        try:
            yield np.asarray(Image.open(path).convert("RGB"))
        except OSError as err:
            raise DataError(f"{path}: not a readable image ({err})") from None


class Metric:
    name = "metric"

    def add(self, images: np.ndarray, prompts: list[str]) -> None:
        raise NotImplementedError

    def result(self) -> dict:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the generated images (a reference set is kept)."""
        raise NotImplementedError
