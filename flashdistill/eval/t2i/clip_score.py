"""CLIP score and PickScore per image with a transformers ``CLIPModel`` from a local folder (see :mod:`.metrics`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...config import ConfigError
from .metrics import Metric, bootstrap_mean

__all__ = ["CLIPScore", "PickScore"]


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
