"""Which student step loses the prompt (flashdistill.eval.handoff): the teacher samples down to h, the student
finishes; ShapesEval per hand-off time and category, for one or more students of the same teacher.

    .venv/bin/python benchmarks/handoff.py --student runs/demo/student_4step [--student ...] \
        [--teacher sd3-nano] [--n-per-category 16] [--seeds 1,2] --out docs/results/handoff_demo.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    from flashdistill.eval.handoff import handoff_scores
    from flashdistill.eval.protocol import parse_seeds
    from flashdistill.pipelines.folders import resolve_model
    from flashdistill.pipelines.generate import load_setup

    ap = argparse.ArgumentParser()
    ap.add_argument("--student", action="append", required=True, help="student folder (repeat)")
    ap.add_argument("--teacher", default="sd3-nano")
    ap.add_argument("--teacher-steps", type=int, default=28)
    ap.add_argument("--n-per-category", type=int, default=16)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--out", required=True, help="markdown file (a .json beside it)")
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)
    teacher = load_setup(resolve_model(args.teacher))
    rows, results = [], {}
    for folder in args.student:
        student = load_setup(folder)
        r = handoff_scores(teacher, student, n_per_category=args.n_per_category, seeds=seeds,
                           teacher_steps=args.teacher_steps)
        results[folder] = {str(k): v for k, v in r["overall"].items()}
        results[folder + ":categories"] = {str(k): v for k, v in r["categories"].items()}
        hs = sorted(r["overall"], reverse=True)
        if not rows:
            rows = ["| student | " + " | ".join(f"h = {h:g}" for h in hs) + " |", "|---|" + "---|" * len(hs)]
        rows.append(f"| `{folder}` | " + " | ".join(f"{r['overall'][h]:.3f}" for h in hs) + " |")
        for cat in ("position", "color_attr", "counting"):
            rows.append(f"| ↳ {cat} | " + " | ".join(f"{r['categories'][h].get(cat, float('nan')):.2f}" for h in hs)
                        + " |")
    cmd = "python benchmarks/handoff.py " + " ".join(sys.argv[1:])
    text = (f"Hand-off (`{cmd}`): the teacher ({args.teacher}, its CFG, {args.teacher_steps} shifted steps) samples "
            f"from noise down to h, the student finishes on its own grid; ShapesEval (train split), mean over seed "
            f"sets {seeds} at {args.n_per_category} prompts per category. h = 1: the student alone; h = 0: the "
            "teacher alone.\n\n" + "\n".join(rows) + "\n")
    out = Path(args.out)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
