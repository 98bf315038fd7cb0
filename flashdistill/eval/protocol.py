"""The measurement protocol every reported score follows.

* Scores are means over several **evaluation seed sets** (default ``1, 2, 3, 4``: 4 × 96 train prompts at 16 per
  category), each set a different draw of prompts and of starting noises. Evaluation noise never equals a training
  sample's noise, whatever the seeds (:mod:`flashdistill.seeds`).
* A **choice** (a merge ratio, a CFG scale, a learning rate) is made on a *selection* seed set (``SELECTION_SEEDS``)
  and reported on the evaluation sets, never on the set it was chosen on.
* ShapesEval carries a **95% bootstrap interval**: prompts are resampled within each (seed set, category) cell, so the
  interval is of the same category-balanced mean that is reported. FD, one number per seed set, carries a Student-t
  interval over the sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["EVAL_SEEDS", "SELECTION_SEEDS", "parse_seeds", "bootstrap_ci", "paired_difference", "t_interval",
           "t_quantile", "summary_row", "format_score", "format_fd", "results_table"]

EVAL_SEEDS = (1, 2, 3, 4)
SELECTION_SEEDS = (0,)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``"1,2,3,4"`` -> ``[1, 2, 3, 4]``; anything else is a ``ConfigError`` naming ``flag``."""
    from ..config import ConfigError

    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text}: expected comma-separated integers such as 1,2,3,4") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{flag} {text}: give one or more distinct non-negative integers")
    return seeds


def bootstrap_ci(cells: Sequence[Sequence[Sequence[bool]]], n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of the mean over seed sets of the mean over categories of per-prompt correctness.

    ``cells[s][c]`` are the 0/1 outcomes of seed set ``s``, category ``c``. Each bootstrap replicate resamples
    every cell with replacement (stratified), so the interval reflects prompt-sampling noise of exactly the
    reported statistic.
    """
    rng = np.random.default_rng(seed)
    arrays = [[np.asarray(c, dtype=np.float64) for c in cats if len(c)] for cats in cells]
    mean = float(np.mean([np.mean([a.mean() for a in cats]) for cats in arrays]))
    reps = np.zeros(n_boot)
    for cats in arrays:
        per_cat = np.zeros(n_boot)
        for a in cats:
            idx = rng.integers(0, len(a), size=(n_boot, len(a)))
            per_cat += a[idx].mean(1)
        reps += per_cat / len(cats)
    reps /= len(arrays)
    alpha = (1 - level) / 2
    return mean, float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


def paired_difference(cells_a, cells_b, n_boot: int = 2000, seed: int = 0,
                      scale_b: float = 1.0) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of score(a) − scale_b·score(b) when both judged the same prompts with the same noises
    (the ``cells`` of two :func:`~flashdistill.eval.model_eval.evaluate_seeds` results): the per-prompt
    differences are bootstrapped as :func:`bootstrap_ci` does, which is tighter than comparing two separate
    intervals. ``scale_b`` tests a ratio target: "a ≥ 0.9× b" holds with confidence when ``lo > 0`` at 0.9."""
    if len(cells_a) != len(cells_b) or any(len(a) != len(b) for a, b in zip(cells_a, cells_b)):
        raise ValueError("paired_difference: the two results judged different seed sets or categories")
    diffs = [[np.asarray(ca, dtype=np.float64) - scale_b * np.asarray(cb, dtype=np.float64)
              for ca, cb in zip(sa, sb)] for sa, sb in zip(cells_a, cells_b)]
    return bootstrap_ci(diffs, n_boot=n_boot, seed=seed)


def t_quantile(df: int) -> float:
    """The two-sided 95% Student-t quantile for ``df`` degrees of freedom (1.96 beyond the table's 9)."""
    return _T975.get(df, 1.96)


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: a 95% Student-t interval of the mean of a few per-seed-set values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan"), float("nan")
    half = t_quantile(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def format_score(entry: dict) -> str:
    """``"0.643 [0.604, 0.685]"`` for an entry with ``shapes_eval`` and ``ci95``."""
    return f"{entry['shapes_eval']:.3f} [{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]"


def format_fd(entry: dict) -> str:
    """``"69.4 [52.1, 86.7]"`` for an entry with ``fd`` and ``fd_ci95``, ``"–"`` without FD."""
    if "fd" not in entry:
        return "–"
    return f"{entry['fd']:.1f} [{entry['fd_ci95'][0]:.1f}, {entry['fd_ci95'][1]:.1f}]"


def summary_row(result: dict) -> dict:
    """The compact row of ``docs/results/*.json`` summaries: ShapesEval mean and interval, held-out, FD, seeds."""
    row = {"shapes_eval": result["train"]["shapes_eval"], "ci95": result["train"]["ci95"],
           "seeds": result["seeds"], "ms_per_image": result["seconds_per_image"] * 1000}
    if "heldout" in result:
        row["heldout"] = result["heldout"]["shapes_eval"]
        row["heldout_ci95"] = result["heldout"]["ci95"]
    if "fd" in result["train"]:
        row["fd"], row["fd_ci95"] = result["train"]["fd"], result["train"]["fd_ci95"]
    return row


def results_table(results: dict, categories: Sequence[str]) -> list[str]:
    """Markdown rows (header first) of ``{label: evaluate_seeds result}``: ShapesEval and held-out with their
    intervals, the per-category scores, FD with its interval, precision, recall and milliseconds per image."""
    lines = ["| model | ShapesEval [95% CI] | held-out [95% CI] | " + " | ".join(categories)
             + " | FD [95% CI] | precision | recall | ms/img |", "|" + "---|" * (len(categories) + 7)]
    for label, r in results.items():
        tr = r["train"]
        cats = " | ".join(f"{tr['categories'].get(c, float('nan')):.2f}" for c in categories)
        lines.append(f"| {label} | {format_score(tr)} | {format_score(r['heldout'])} | {cats} | {format_fd(tr)} | "
                     f"{tr.get('precision', float('nan')):.2f} | {tr.get('recall', float('nan')):.2f} | "
                     f"{r['seconds_per_image'] * 1000:.1f} |")
    return lines
