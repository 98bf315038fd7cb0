"""Judge a model (teacher or student folder) or a folder of images on the Shapes world.

``evaluate_model`` samples the fixed evaluation prompts (train and held-out compositions) with the given steps,
guidance and seed, then reports ShapesEval (overall and per category), FD against real Shapes images (when the
feature network is shipped) and the time per image. ``flashdistill eval`` is the command-line front.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["evaluate_images", "evaluate_model", "scores_json", "add_args", "run"]


def _fd_judge():
    try:
        from .fd import FDJudge

        return FDJudge()
    except (ImportError, FileNotFoundError):
        return None


def scores_json(results: dict) -> str:
    """JSON of ``{setting: evaluate_model(...) result}`` without the per-sample ``correct`` lists."""

    def strip(value):
        return {k: v for k, v in value.items() if k != "correct"} if isinstance(value, dict) else value

    return json.dumps({name: {k: strip(v) for k, v in res.items()} for name, res in results.items()}, indent=2)


def evaluate_images(images: np.ndarray, specs, ref_images: np.ndarray | None = None, fd=None) -> dict:
    """ShapesEval (+ FD, precision, recall when ``ref_images`` and the FD network are available)."""
    from .shapes_eval import ShapesEval

    scores = ShapesEval().score(images, specs)
    out = {k: v for k, v in scores.items() if k not in ("correct",)}
    out["correct"] = scores["correct"]
    fd = fd if fd is not None else (_fd_judge() if ref_images is not None else None)
    if fd is not None and ref_images is not None:
        out.update({k: float(v) for k, v in fd.score(images, ref_images).items() if np.isscalar(v)})
    return out


def evaluate_model(folder: str | Path | None, n_per_category: int = 16, steps: int | None = None,
                   guidance: float | None = None, seed: int = 0, drop_t5: bool = False, splits=("train", "heldout"),
                   pipe=None, ref_size: int = 512, batch_size: int = 64, return_images: bool = False) -> dict:
    """Sample and judge one setting. Returns ``{split: scores, "seconds_per_image": s, "timesteps": [...]}``."""
    from ..pipelines.generate import generate_images, load_setup
    from ..shapes import eval_prompts

    setup = load_setup(folder, steps=steps, guidance=guidance, drop_t5=drop_t5, pipe=pipe)
    fd = _fd_judge()
    ref = None
    if fd is not None:
        from .fd import reference_images

        ref = reference_images(ref_size, seed=1234)
    result: dict = {"timesteps": setup.timesteps, "guidance_scale": setup.guidance_scale}
    images_out = {}
    seconds = []
    for split in splits:
        prompts = eval_prompts(n_per_category, seed=seed, split=split)
        images, sec = generate_images(setup, [p for p, _ in prompts], seed=seed, batch_size=batch_size)
        seconds.append(sec)
        result[split] = evaluate_images(images, [s for _, s in prompts], ref if split == "train" else None, fd)
        images_out[split] = images
    result["seconds_per_image"] = float(np.mean(seconds))
    if return_images:
        result["images"] = images_out
    return result


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="teacher/student pipeline folder (default: shipped teacher)")
    parser.add_argument("--images", default=None, help="or: a folder of images with captions.jsonl (file, prompt)")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: the folder's own)")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the folder's own)")
    parser.add_argument("--n-per-category", type=int, default=16, help="prompts per category and split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-t5", action="store_true", help="sample without the T5 text encoder")
    parser.add_argument("--json", default=None, help="write the scores to this JSON file")


def _images_folder(folder: Path) -> tuple[np.ndarray, list[str]]:
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
        prompts.append(item["prompt"])
    return np.stack(images), prompts


def _table(rows: dict[str, dict]) -> str:
    from ..shapes import CATEGORIES

    head = "| split | overall | " + " | ".join(CATEGORIES) + " | FD |"
    lines = [head, "|" + "---|" * (len(CATEGORIES) + 3)]
    for split, s in rows.items():
        cells = [f"{s[c]:.3f}" if c in s else "–" for c in CATEGORIES]
        fd = f"{s['fd']:.2f}" if "fd" in s else "–"
        lines.append(f"| {split} | {s['overall']:.3f} | " + " | ".join(cells) + f" | {fd} |")
    return "\n".join(lines)


def run(args) -> int:
    from ..shapes import parse_caption

    if args.images:
        images, prompts = _images_folder(Path(args.images))
        result = {"images": evaluate_images(images, [parse_caption(p) for p in prompts])}
        rows = {"images": result["images"]}
    else:
        from ..shapes.nano import teacher_path

        folder = args.model or teacher_path()
        result = evaluate_model(folder, args.n_per_category, args.steps, args.guidance, args.seed, args.no_t5)
        rows = {k: result[k] for k in ("train", "heldout")}
        print(f"timesteps {[round(t, 3) for t in result['timesteps']]}, guidance {result['guidance_scale']}, "
              f"{result['seconds_per_image'] * 1000:.1f} ms/image")
    print(_table(rows))
    if args.json:
        Path(args.json).write_text(scores_json({"result": result}))
        print(f"scores written to {args.json}")
    return 0
