"""Judge two model folders on the same prompts and noises and report their paired difference.

    .venv/bin/python benchmarks/paired_compare.py --a FOLDER --b FOLDER [--steps 25] [--out docs/results/x.md]

For questions such as "does storing the teacher in fp16 cost anything?": both folders are judged under the
project's protocol (evaluation seed sets 1-4, 16 prompts per category, 95% bootstrap intervals) and the paired
difference a − b of ShapesEval (same prompts, same noises) is reported with its interval, with FD and the largest
pixel difference between the two folders' images of the first seed set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="first model folder")
    ap.add_argument("--b", required=True, help="second model folder")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: each folder's own)")
    ap.add_argument("--seeds", default="1,2,3,4")
    ap.add_argument("--n-per-category", type=int, default=16)
    ap.add_argument("--out", default=None, help="write the result as markdown here (and .json beside it)")
    args = ap.parse_args()
    import numpy as np

    from flashdistill.eval.model_eval import evaluate_seeds, scores_json
    from flashdistill.eval.protocol import format_fd, format_score, paired_difference, parse_seeds

    seeds = parse_seeds(args.seeds)
    res = {}
    for name in ("a", "b"):
        print(f"= judging {name}: {getattr(args, name)}", flush=True)
        res[name] = evaluate_seeds(getattr(args, name), seeds, args.n_per_category, steps=args.steps)
    pixels = float(np.abs(res["a"].pop("images").astype(np.int16) - res["b"].pop("images").astype(np.int16)).max())
    lines = ["| model | ShapesEval [95% CI] | held-out [95% CI] | FD [95% CI] |", "|---|---|---|---|"]
    for name in ("a", "b"):
        r = res[name]
        lines.append(f"| {name}: `{getattr(args, name)}` | {format_score(r['train'])} | "
                     f"{format_score(r['heldout'])} | {format_fd(r['train'])} |")
    diff = {split: paired_difference(res["a"][split]["cells"], res["b"][split]["cells"])
            for split in ("train", "heldout")}
    summary = (f"Paired difference a − b (same prompts and noises): ShapesEval {diff['train'][0]:+.3f} "
               f"[{diff['train'][1]:+.3f}, {diff['train'][2]:+.3f}], held-out {diff['heldout'][0]:+.3f} "
               f"[{diff['heldout'][1]:+.3f}, {diff['heldout'][2]:+.3f}]; largest pixel difference on seed set "
               f"{seeds[0]}: {pixels:.0f} of 255.")
    cmd = "python benchmarks/paired_compare.py " + " ".join(sys.argv[1:])
    text = (f"Regenerate: `{cmd}` (seed sets {seeds}, {args.n_per_category} prompts per category each, "
            f"{'each folder’s own step count' if args.steps is None else f'{args.steps} steps'}).\n\n"
            + "\n".join(lines) + "\n\n" + summary + "\n")
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps({
            "a": args.a, "b": args.b, "steps": args.steps, "seeds": seeds, "command": cmd,
            "paired_difference": diff, "max_pixel_difference": pixels,
            "results": json.loads(scores_json(res))}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
