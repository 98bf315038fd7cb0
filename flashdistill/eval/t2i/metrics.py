"""Metrics over generated images, each behind one small interface: ``add(images, prompts)`` with uint8 images
``(N, H, W, 3)``, then ``result()`` -> a dict of numbers. Weights are local paths; nothing is downloaded.

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
import torch

from ...config import ConfigError
from ...errors import DataError

__all__ = ["Metric", "FID", "CLIPScore", "PickScore", "bootstrap_mean", "read_image_folder"]

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


def _to_tensor(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # uint8 (N, 3, H, W)
    if size and x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x


def _load_feature_net(path) -> torch.nn.Module:
    """A feature network saved with ``torch.export.save`` (``.pt2``) or, legacy, ``torch.jit.save``."""
    if not Path(path).is_file():
        raise ConfigError(f"--fid-features {path}: no such file (a feature network saved with torch.export.save)")
    try:
        if str(path).endswith(".pt2"):
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as err:
        raise ConfigError(f"--fid-features {path}: not a saved torch.export program or TorchScript module "
                          f"({str(err)[:200]})") from None


class FID(Metric):
    name = "fid"

    def __init__(self, reference: str | Path, inception: str | None = None, features: str | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 64, resize: int | None = None):
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance
        except ImportError:
            raise ConfigError("--metrics fid needs torchmetrics: pip install 'flashdistill[metrics]'") from None
        if (inception is None) == (features is None):
            raise ConfigError("--metrics fid: give exactly one of --fid-inception (torch-fidelity InceptionV3 "
                              "weights) or --fid-features (a TorchScript feature network)")
        if inception is not None:
            if not Path(inception).is_file():
                raise ConfigError(f"--fid-inception {inception}: no such file (the InceptionV3 weights, e.g. "
                                  "pt_inception-2015-12-05-6726825d.pth)")
            try:
                self.fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception),
                                                    reset_real_features=False)
            except ModuleNotFoundError as err:
                raise ConfigError(f"--fid-inception needs torch-fidelity ({err}): pip install torch-fidelity") from None
            self.resize = resize or 299
        else:
            net = _load_feature_net(features)
            self.resize = resize
            size = (3, resize, resize) if resize else (3, 64, 64)
            self.fid = FrechetInceptionDistance(feature=net, input_img_size=size, reset_real_features=False)
        self.fid = self.fid.to(device)
        self.device, self.batch_size, self.n_real, self.n_fake = torch.device(device), batch_size, 0, 0
        self._add_reference(reference)

    def _add_reference(self, reference) -> None:
        batch = []
        for image in read_image_folder(reference):
            batch.append(image)
            if len(batch) == self.batch_size:
                self._update(np.stack(batch), real=True)
                batch = []
        if batch:
            self._update(np.stack(batch), real=True)

    def _update(self, images: np.ndarray, real: bool) -> None:
        self.fid.update(_to_tensor(images, self.resize).to(self.device), real=real)
        if real:
            self.n_real += len(images)
        else:
            self.n_fake += len(images)

    def add(self, images, prompts) -> None:
        for s in range(0, len(images), self.batch_size):
            self._update(images[s : s + self.batch_size], real=False)

    def reset(self) -> None:
        self.fid.reset()  # reset_real_features=False: the reference statistics stay
        self.n_fake = 0

    def result(self) -> dict:
        if self.n_fake < 2 or self.n_real < 2:
            raise DataError(f"FID needs at least 2 generated and 2 reference images (have {self.n_fake} and "
                            f"{self.n_real})")
        return {"fid": float(self.fid.compute()), "n_reference": self.n_real, "n_generated": self.n_fake}


class CLIPScore(Metric):
    name = "clip_score"
    flag = "--clip-model"

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu"):
        from transformers import AutoProcessor, CLIPModel

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"{self.flag} {model_dir}: no config.json there (a local transformers CLIP folder, "
                              "e.g. openai/clip-vit-base-patch32 saved with save_pretrained)")
        try:
            self.model = CLIPModel.from_pretrained(model_dir).eval().to(device)
            self.processor = AutoProcessor.from_pretrained(model_dir)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{self.flag} {model_dir}: not a loadable CLIP folder ({str(err)[:200]})") from None
        self.device, self.values = torch.device(device), []

    @torch.no_grad()
    def cosines(self, images: np.ndarray, prompts: list[str]) -> torch.Tensor:
        """Cosine similarity of each image with its own prompt, ``(N,)``."""
        inputs = self.processor(text=list(prompts), images=list(images), return_tensors="pt", padding=True,
                                truncation=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        image = self.model.get_image_features(pixel_values=inputs["pixel_values"])
        text = self.model.get_text_features(input_ids=inputs["input_ids"],
                                            attention_mask=inputs.get("attention_mask"))
        image, text = (getattr(f, "pooler_output", f) for f in (image, text))
        return torch.nn.functional.cosine_similarity(image.float(), text.float(), dim=-1)

    def scores(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """Per-image ``100 · max(cos, 0)`` of each image with its own prompt."""
        return (100 * self.cosines(images, prompts).clamp(min=0)).cpu().numpy()

    def add(self, images, prompts) -> None:
        self.values.extend(self.scores(images, prompts).tolist())

    def reset(self) -> None:
        self.values = []

    def result(self) -> dict:
        mean, lo, hi = bootstrap_mean(self.values)
        return {"clip_score": mean, "clip_score_ci95": [lo, hi], "n": len(self.values)}


class PickScore(CLIPScore):
    name = "pickscore"
    flag = "--pickscore-model"

    def scores(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """Per-image ``logit_scale · cos``, the PickScore reward (comparable across images of one prompt)."""
        scale = float(self.model.logit_scale.exp())
        return (scale * self.cosines(images, prompts)).cpu().numpy()

    def result(self) -> dict:
        mean, lo, hi = bootstrap_mean(self.values)
        return {"pickscore": mean, "pickscore_ci95": [lo, hi], "n": len(self.values)}
