"""Judge a model (teacher or student folder) or a folder of images on the Shapes world.

``evaluate_model`` samples the fixed evaluation prompts (train and held-out compositions) with the given steps,
guidance and seed, then reports ShapesEval (overall and per category), FD against real Shapes images (when the
feature network is shipped) and the time per image. ``flashdistill eval`` is the command-line front.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .protocol import EVAL_SEEDS, bootstrap_ci, format_fd, format_score, t_interval

__all__ = ["evaluate_images", "evaluate_model", "evaluate_seeds", "scores_json", "add_args", "run"]


@functools.lru_cache(maxsize=1)
def _fd_judge():
    try:
        from .fd import FDJudge

        return FDJudge()
    except (ImportError, FileNotFoundError):
        return None


@functools.lru_cache(maxsize=2)
def _reference(ref_size: int) -> np.ndarray:
    from .fd import reference_images

    return reference_images(ref_size, seed=1234)


def scores_json(results: dict) -> str:
    """JSON of ``{setting: evaluate_model(...) result}`` without the per-sample ``correct`` lists."""

    def strip(value):
        return {k: v for k, v in value.items() if k not in ("correct", "cells")} if isinstance(value, dict) else value

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
        ref = _reference(ref_size)
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


def _cells(result: dict) -> list[list[bool]]:
    from ..shapes import CATEGORIES

    correct, counts = result["correct"], result["counts"]
    out, start = [], 0
    for cat in CATEGORIES:  # the evaluation prompts are ordered by category
        n = counts.get(cat, 0)
        out.append(correct[start : start + n])
        start += n
    return out


def evaluate_seeds(folder, seeds: Sequence[int] = EVAL_SEEDS, n_per_category: int = 16, steps=None, guidance=None,
                   drop_t5: bool = False, splits=("train", "heldout"), pipe=None, batch_size: int = 64,
                   progress: bool = False) -> dict:
    """Judge one setting on every seed set; returns per split the protocol's summary (see :func:`summary_row`) and
    its per-prompt outcomes (``cells``: seed set -> category -> 0/1, for paired comparisons), plus the per-seed
    results, ``seconds_per_image`` and the first seed set's train images (``images``)."""
    from ..models.backbones import KINDS
    from ..pipelines.folders import load_pipeline

    if pipe is None:
        pipe = load_pipeline(folder, drop_t5=drop_t5, kinds=tuple(KINDS.values()))
    per_seed = {}
    iterator = seeds
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(seeds, desc=f"eval {folder}", unit="seed set")
    images = None
    for s in iterator:
        res = evaluate_model(folder, n_per_category, steps=steps, guidance=guidance, seed=s, drop_t5=drop_t5,
                             splits=splits, pipe=pipe, batch_size=batch_size, return_images=images is None)
        if images is None:
            images = res.pop("images")["train" if "train" in splits else splits[0]]
        per_seed[s] = res
    first = per_seed[seeds[0]]
    out = {"seeds": list(seeds), "n_per_category": n_per_category, "timesteps": first["timesteps"],
           "guidance_scale": first["guidance_scale"],
           "seconds_per_image": float(np.mean([r["seconds_per_image"] for r in per_seed.values()])),
           "per_seed": {str(s): {sp: {k: v for k, v in r[sp].items() if k != "correct"} for sp in splits}
                        for s, r in per_seed.items()}, "images": images}
    for split in splits:
        results = [per_seed[s][split] for s in seeds]
        mean, lo, hi = bootstrap_ci([_cells(r) for r in results])
        entry = {"shapes_eval": mean, "ci95": [lo, hi], "n_prompts": sum(len(r["correct"]) for r in results),
                 "cells": [_cells(r) for r in results],  # per seed set, per category: 0/1 outcomes (paired tests)
                 "categories": {c: float(np.mean([r[c] for r in results if c in r]))
                                for c in results[0]["counts"]}}
        if all("fd" in r for r in results):
            fd, fd_lo, fd_hi = t_interval([r["fd"] for r in results])
            entry.update(fd=fd, fd_ci95=[fd_lo, fd_hi])
            for key in ("precision", "recall"):
                entry[key] = float(np.mean([r[key] for r in results]))
        out[split] = entry
    return out


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="teacher/student pipeline folder (default: shipped teacher)")
    parser.add_argument("--images", default=None, help="or: a folder of images with captions.jsonl (file, prompt)")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: the folder's own)")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the folder's own)")
    parser.add_argument("--n-per-category", type=int, default=16, help="prompts per category and split")
    parser.add_argument("--seeds", default=",".join(map(str, EVAL_SEEDS)),
                        help="evaluation seed sets (prompts + noises); scores are their mean with a 95%% interval")
    parser.add_argument("--no-t5", action="store_true", help="sample without the T5 text encoder")
    parser.add_argument("--json", default=None, help="write the scores to this JSON file")
    from .t2i.run import add_generic_args

    add_generic_args(parser)


def _table(rows: dict[str, dict]) -> str:
    """Rows of :func:`~flashdistill.eval.protocol.evaluate_seeds` splits (or single image-folder scores)."""
    from ..shapes import CATEGORIES

    head = "| split | ShapesEval [95% CI] | " + " | ".join(CATEGORIES) + " | FD [95% CI] |"
    lines = [head, "|" + "---|" * (len(CATEGORIES) + 3)]
    for split, s in rows.items():
        cats = s.get("categories", s)
        cells = [f"{cats[c]:.3f}" if c in cats else "–" for c in CATEGORIES]
        overall = format_score(s) if "shapes_eval" in s else f"{s['overall']:.3f}"
        fd = format_fd(s) if "fd_ci95" in s else (f"{s['fd']:.2f}" if "fd" in s else "–")
        lines.append(f"| {split} | {overall} | " + " | ".join(cells) + f" | {fd} |")
    return "\n".join(lines)


def run(args) -> int:
    from ..shapes import parse_caption
    from .t2i.run import check_no_generic_flags, run_generic

    if args.metrics or args.config:
        import argparse

        parser = argparse.ArgumentParser()
        add_args(parser)
        return run_generic(args, {a.dest: a.default for a in parser._actions})
    check_no_generic_flags(args)

    if args.images:
        from ..errors import DataError
        from .image_folder import read_captioned_images

        captions = Path(args.images) / "captions.jsonl"
        images, numbered = read_captioned_images(Path(args.images))
        specs = []
        for n, prompt in numbered:
            try:
                specs.append(parse_caption(prompt))
            except ValueError as err:
                raise DataError(f"{captions}:{n}: prompt {prompt!r} is not a Shapes caption ({err}); ShapesEval judges "
                                "only captions of the Shapes world") from None
        result = {"images": evaluate_images(images, specs)}
        rows = {"images": result["images"]}
    else:
        from ..pipelines.folders import resolve_model
        from .protocol import parse_seeds

        seeds = parse_seeds(args.seeds)
        result = evaluate_seeds(resolve_model(args.model), seeds, args.n_per_category, args.steps, args.guidance,
                                args.no_t5, progress=True)
        result.pop("images")
        rows = {k: result[k] for k in ("train", "heldout")}
        print(f"timesteps {[round(t, 3) for t in result['timesteps']]}, guidance {result['guidance_scale']}, "
              f"{result['seconds_per_image'] * 1000:.1f} ms/image, seed sets {seeds} "
              f"({result['train']['n_prompts']} train prompts)")
    print(_table(rows))
    if not args.images and args.steps is None and args.guidance is None and not args.no_t5:  # its own settings
        from ..pipelines.model_card import update_eval_section

        folder = resolve_model(args.model)
        seeds_text = ",".join(map(str, result["seeds"]))
        if update_eval_section(folder, f"`flashdistill eval --seeds {seeds_text} --n-per-category "
                               f"{args.n_per_category}` (the Shapes world's judges):\n\n" + _table(rows)):
            print(f"model card updated: {folder / 'README.md'}")
    if args.json:
        Path(args.json).write_text(scores_json({"result": result}))
        print(f"scores written to {args.json}")
    return 0
