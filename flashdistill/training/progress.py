"""Progress reporting: a tqdm bar (step, key losses, rate), ``metrics.jsonl`` in the run folder, TensorBoard
when it is installed, and PNG sample grids. Only the main process writes; values are reduced before."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["Progress", "save_image_grid", "truncate_metrics"]


def save_image_grid(
    images: torch.Tensor | list[Image.Image], path: str | Path, nrow: int | None = None
) -> Path:
    """Write ``images`` as one PNG grid: a ``(N, 3, H, W)`` tensor in [0, 1] or a list of PIL images."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"sample images must be (N, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        arr = (images.detach().float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255).round()
        pil = [
            Image.fromarray(a.astype(np.uint8).squeeze(-1) if a.shape[-1] == 1 else a.astype(np.uint8))
            for a in arr
        ]
    else:
        pil = list(images)
    if not pil:
        raise ValueError("no sample images to write")
    nrow = nrow or math.ceil(math.sqrt(len(pil)))
    w, h = pil[0].size
    rows = math.ceil(len(pil) / nrow)
    grid = Image.new("RGB", (nrow * w, rows * h))
    for i, im in enumerate(pil):
        grid.paste(im.convert("RGB"), ((i % nrow) * w, (i // nrow) * h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop rows logged after ``after_step`` (a resumed run re-logs them), keeping the file well-formed."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by the crash
        if row.get("step", 0) <= after_step:
            keep.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
    tmp.replace(path)


class Progress:
    """Main-process sinks for reduced metrics. ``write(step, values)`` appends one row everywhere."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        bar: bool = True,
        tensorboard: bool = True,
        key_metrics: int = 4,
    ):
        self.run_dir, self.enabled, self.key_metrics = Path(run_dir), enabled, key_metrics
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.start_time, self.start_step = time.time(), start_step
        self.bar = self.tb = None
        if not enabled:
            return
        truncate_metrics(self.metrics_path, start_step)
        if bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_step + 1)

    def advance(self, step: int) -> None:
        """Move the bar to ``step``."""
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def write(self, step: int, values: dict[str, float]) -> None:
        """Append ``values`` for ``step`` to metrics.jsonl / TensorBoard and refresh the bar's postfix."""
        if not self.enabled:
            return
        elapsed = time.time() - self.start_time
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        row: dict[str, Any] = {
            "step": step,
            "time": round(elapsed, 3),
            "steps_per_s": round(rate, 4),
            **values,
        }
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.bar is not None:
            keys = [k for k in values if "/" not in k][: self.key_metrics] or list(values)[: self.key_metrics]
            self.bar.set_postfix({k: f"{values[k]:.4g}" for k in keys}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
