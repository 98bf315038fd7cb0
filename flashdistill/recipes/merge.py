"""``flashdistill merge``: fuse the two split-timestep branches of a student by weight interpolation.

``w = r·w_low + (1 − r)·w_high`` for each ratio ``r`` in a sweep; every candidate is judged on the *selection* seed
sets and the best one is written as the student folder (the paper picked 3:7 by GenEval), then reported on the
*report* seed sets, which must be disjoint from the selection ones. The judge is ShapesEval (``--metric
shapes_eval``, the Shapes world) or, for real models, CLIP score or FID on ``--prompts`` (``--metric clip|fid``,
weights from local paths, :mod:`flashdistill.eval.t2i`). The sweep is written next to it as ``merge_sweep.json`` and
``merge_sweep.md``. A single ratio (``--ratios 0.3``) is merged without judging.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..config import ConfigError
from ..errors import DataError
from ..eval.protocol import EVAL_SEEDS, SELECTION_SEEDS, format_score, parse_seeds

__all__ = ["interpolate_state", "add_args", "run"]


def interpolate_state(low: dict[str, torch.Tensor], high: dict[str, torch.Tensor], ratio: float) -> dict:
    """``ratio·low + (1 − ratio)·high`` for every floating tensor (computed in fp32, cast back)."""
    if set(low) != set(high):
        diff = sorted(set(low) ^ set(high))[:5]
        raise DataError(f"the two branches have different parameters, e.g. {diff}")
    out = {}
    for key, a in low.items():
        b = high[key]
        if a.shape != b.shape:
            raise DataError(f"parameter {key}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        out[key] = (ratio * a.float() + (1 - ratio) * b.float()).to(a.dtype) if a.is_floating_point() else a
    return out


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--low", required=True, help="student folder trained on steps with t <= 0.5")
    parser.add_argument("--high", required=True, help="student folder trained on steps with t > 0.5")
    parser.add_argument("--out", required=True, help="merged student folder to write")
    parser.add_argument("--ratios", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
                        help="comma-separated weights of the low branch; one value merges without judging")
    parser.add_argument("--n-per-category", type=int, default=8, help="ShapesEval prompts per category")
    parser.add_argument("--metric", default="shapes_eval", choices=["shapes_eval", "clip", "fid"],
                        help="what chooses the ratio: ShapesEval (Shapes world), or CLIP score / FID on --prompts")
    parser.add_argument("--prompts", default=None, help="clip / fid: prompt file (lines, COCO captions, GenEval)")
    parser.add_argument("--limit", type=int, default=64, help="clip / fid: the first N prompts")
    parser.add_argument("--clip-model", default=None, help="clip: local transformers CLIP folder")
    parser.add_argument("--reference", default=None, help="fid: folder of reference images")
    parser.add_argument("--fid-inception", default=None, help="fid: local torch-fidelity InceptionV3 weights")
    parser.add_argument("--fid-features", default=None, help="fid: or a torch.export feature network (.pt2)")
    parser.add_argument("--selection-seeds", default=",".join(map(str, SELECTION_SEEDS)),
                        help="seed sets the ratio is chosen on (never reported)")
    parser.add_argument("--report-seeds", default=",".join(map(str, EVAL_SEEDS)),
                        help="seed sets the chosen merge is reported on (disjoint from --selection-seeds); "
                             "empty: do not report")


def _ratios(text: str) -> list[float]:
    try:
        ratios = [float(r) for r in text.split(",")]
    except ValueError:
        raise ConfigError(f"--ratios {text}: expected comma-separated numbers such as 0.3,0.5") from None
    if any(not 0 <= r <= 1 for r in ratios):
        raise ConfigError(f"--ratios {text}: every ratio must lie in [0, 1]")
    return ratios


_KEY = {"shapes_eval": "shapes_eval", "clip": "clip_score", "fid": "fid_score"}


def _judge(args):
    """``judge(folder, pipe, seeds) -> row fields`` for ``--metric``."""
    if args.metric == "shapes_eval":
        from ..eval.model_eval import evaluate_seeds

        def shapes(folder, pipe, seeds):
            res = evaluate_seeds(folder, seeds, args.n_per_category, splits=("train",), pipe=pipe)["train"]
            return {"shapes_eval": res["shapes_eval"], "ci95": res["ci95"], "fd": res.get("fd")}

        return shapes
    from ..eval.t2i.judge import MetricJudge

    metric = MetricJudge(args.metric, args.prompts, args.limit, args.clip_model, args.reference, args.fid_inception,
                         args.fid_features)

    def generic(folder, pipe, seeds):
        r = metric(folder, pipe, seeds)
        return {_KEY[args.metric]: r["score"], "ci95": r["ci95"]}

    return generic


def _best(rows: list[dict], metric: str) -> dict:
    """The best row on the selection sets (ShapesEval ties go to the lower FD when the FD network is shipped)."""
    if metric == "shapes_eval":
        return max(rows, key=lambda r: (r["shapes_eval"] or 0.0, -(r["fd"] if r["fd"] is not None else 0.0)))
    if len(rows) == 1:
        return rows[0]
    sign = 1.0 if metric == "clip" else -1.0  # FID: lower is better
    return max(rows, key=lambda r: sign * r[_KEY[metric]])


def _format(row: dict, metric: str) -> str:
    if metric == "shapes_eval":
        return format_score(row)
    value = row[_KEY[metric]]
    return f"{value:.3f}" + (f" [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]" if row.get("ci95") else "")


def _same_sampler(low: str, high: str) -> None:
    """Two split branches of one student share its sampler; the merged folder keeps the low branch's settings, so
    branches that sample differently (another grid, shift or step count) are refused, naming the key."""
    from ..pipelines.folders import read_run_settings

    a, b = read_run_settings(low), read_run_settings(high)
    for key in ("sigmas", "num_inference_steps", "grid_shift", "guidance_scale"):
        if a.get(key) != b.get(key):
            raise ConfigError(f"--low {low} and --high {high} sample differently ({key}: {a.get(key)} vs "
                              f"{b.get(key)}): merge the two branches of one student")


def run(args) -> int:
    import shutil

    from ..pipelines.folders import load_pipeline

    ratios = _ratios(args.ratios)
    selection = parse_seeds(args.selection_seeds, "--selection-seeds")
    report = parse_seeds(args.report_seeds, "--report-seeds") if args.report_seeds.strip() else []
    if set(selection) & set(report):
        raise ConfigError(f"--selection-seeds {selection} and --report-seeds {report} overlap: a ratio chosen on "
                          "a seed set must be reported on others")
    _same_sampler(args.low, args.high)
    judge = _judge(args)
    low_pipe = load_pipeline(args.low)
    high_state = load_pipeline(args.high).transformer.state_dict()
    low_state = {k: v.clone() for k, v in low_pipe.transformer.state_dict().items()}
    rows = [{"ratio_low": r, _KEY[args.metric]: None, "ci95": None, "fd": None} for r in ratios]
    for row in rows if len(rows) > 1 else []:  # one ratio: nothing to choose, so nothing to judge
        low_pipe.transformer.load_state_dict(interpolate_state(low_state, high_state, row["ratio_low"]))
        row.update(judge(args.low, low_pipe, selection))
        print(f"ratio low:high = {row['ratio_low']:.2f}:{1 - row['ratio_low']:.2f}  {args.metric} "
              f"{row[_KEY[args.metric]]:.3f} (selection seeds {selection})")
    best = _best(rows, args.metric)
    low_pipe.transformer.load_state_dict(interpolate_state(low_state, high_state, best["ratio_low"]))
    reported = None
    if report and len(rows) > 1:
        reported = {"seeds": report, **judge(args.low, low_pipe, report)}
        print(f"chosen ratio on report seeds {report}: {args.metric} {_format(reported, args.metric)}")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(args.low, out)
    low_pipe.transformer.save_pretrained(out / "transformer")
    info = json.loads((out / "flashdistill.json").read_text())
    info.update(stage="split_merged", merge_ratio_low=best["ratio_low"], merge_selection_seeds=selection,
                merge_metric=args.metric)
    (out / "flashdistill.json").write_text(json.dumps(info, indent=2) + "\n")
    from ..pipelines.model_card import write_model_card

    write_model_card(out, pipe=low_pipe)  # the merged student's own card and sample
    (out / "merge_sweep.json").write_text(json.dumps({"metric": args.metric, "selection_seeds": selection, "rows": rows,
                                                      "chosen": best["ratio_low"], "report": reported}, indent=2)
                                          + "\n")
    what = f"{args.n_per_category} prompts per category each" if args.metric == "shapes_eval" else \
        f"{args.metric} on the first {args.limit} prompts of {args.prompts}"
    table = [f"Chosen on selection seed sets {selection} ({what}).", "",
             f"| low : high | {args.metric} [95% CI] | FD |", "|---|---|---|"]
    for r in rows:
        score = "–" if r[_KEY[args.metric]] is None else _format(r, args.metric)
        fd = "–" if r["fd"] is None else f"{r['fd']:.2f}"
        table.append(f"| {r['ratio_low']:.1f} : {1 - r['ratio_low']:.1f} | {score} | {fd} |")
    if reported:
        table += ["", f"Chosen ratio {best['ratio_low']:.1f} : {1 - best['ratio_low']:.1f} on report seed sets "
                      f"{report}: {args.metric} {_format(reported, args.metric)}."]
    (out / "merge_sweep.md").write_text("\n".join(table) + "\n")
    print(f"best ratio {best['ratio_low']:.2f}:{1 - best['ratio_low']:.2f}; merged student written to {out}")
    return 0
