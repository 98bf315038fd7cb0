"""Torch datasets over the Shapes world: a rendered pool of (image, caption) pairs, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from . import world

__all__ = ["ShapesPool"]


class ShapesPool(Dataset):
    """``n`` scenes of ``split`` rendered once; items are ``{"image": (3, H, W) in [-1, 1], "prompt": str}``."""

    def __init__(self, n: int, seed: int = 0, split: str = "train", size: int = world.IMAGE_SIZE):
        data = world.make_dataset(n, seed=seed, split=split, size=size)
        self.images = torch.from_numpy(np.stack([d[0] for d in data]))  # (n, H, W, 3) uint8
        self.prompts = [d[1] for d in data]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict:
        image = self.images[i].permute(2, 0, 1).float() / 127.5 - 1.0
        return {"image": image, "prompt": self.prompts[i]}
