"""Small PIL-only plots (no matplotlib dependency): loss curves from ``metrics.jsonl`` files."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["read_metrics", "line_plot", "label_font"]

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def label_font(size: int = 13):
    """Pillow's own font at a size where labels stay legible (its default size squeezes the spaces between words);
    the bitmap font where Pillow has no FreeType."""
    return ImageFont.load_default(size=size)


def read_metrics(path: str | Path, key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``key`` in a run's ``metrics.jsonl`` (rows without it are skipped)."""
    steps, values = [], []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        if key in row and row[key] == row[key]:
            steps.append(int(row["step"]))
            values.append(float(row[key]))
    return steps, values


def line_plot(series: dict[str, tuple[list[int], list[float]]], path: str | Path, title: str = "",
              size: tuple[int, int] = (640, 360)) -> Path:
    """Plot several ``label -> (x, y)`` series with a legend; axes are labelled with their ranges."""
    w, h = size
    left, right, top, bottom = 60, 20, 30, 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = [x for s in series.values() for x in s[0]]
    ys = [y for s in series.values() for y in s[1]]
    if not xs:
        raise ValueError(f"nothing to plot for {title!r}")
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    d.text((left, 8), title, fill="black")
    d.text((4, top), f"{y1:.3g}", fill="black")
    d.text((4, h - bottom - 10), f"{y0:.3g}", fill="black")
    d.text((left, h - bottom + 6), str(x0), fill="black")
    d.text((w - right - 40, h - bottom + 6), str(x1), fill="black")
    for k, (label, (x, y)) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        if len(x) > 1:
            d.line([px(a, b) for a, b in zip(x, y)], fill=color, width=2)
        d.text((w - right - 200, top + 6 + 12 * k), label, fill=color)
    img.save(path)
    return Path(path)
