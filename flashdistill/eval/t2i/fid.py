"""FID against a reference image folder with torchmetrics' ``FrechetInceptionDistance`` (see :mod:`.metrics`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...config import ConfigError
from ...errors import DataError
from .metrics import Metric, read_image_folder

__all__ = ["FID"]


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
