"""Regenerate a teacher report (docs/results/teacher_report.md for SD3-nano, <name>_teacher_report.md for the
others, and their sample grids).

    .venv/bin/python benchmarks/teacher_report.py [--model sd3-nano|unet-nano|pixart-nano|FOLDER] [--n-per-category 16]

ShapesEval (overall, per category; train and held-out compositions), FD (train split, against real Shapes images)
and time per image, at 50, 25, 8, 4 and 2 steps (diffusers' own sigmas for SD3, the "trailing" DDIM timesteps for
variance-preserving teachers), with the teacher's CFG scale and without, with and without the T5 text encoder
(SD3 only). Same prompts and seeds in every setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    from flashdistill.demo import comparison_grid
    from flashdistill.eval.model_eval import evaluate_seeds, scores_json
    from flashdistill.eval.noised_start import noised_start_scores
    from flashdistill.eval.protocol import format_fd, format_score, parse_seeds
    from flashdistill.models.backbones import KINDS
    from flashdistill.pipelines.folders import guidance_of, load_pipeline, read_run_settings, resolve_model
    from flashdistill.pipelines.generate import load_setup
    from flashdistill.shapes import CATEGORIES

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sd3-nano", help="sd3-nano, unet-nano, pixart-nano or a teacher folder")
    ap.add_argument("--n-per-category", type=int, default=16)
    ap.add_argument("--steps", default="50,25,8,4,2")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--seeds", default="1,2,3,4", help="evaluation seed sets (scores: mean and 95% interval)")
    ap.add_argument("--starts", default="0.1,0.3,0.5,0.7,0.8,0.9,1.0",
                    help="noise levels t0 of the noised-start table ('' = no table)")
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)
    out = ROOT / args.out
    folder = resolve_model(args.model)
    prefix = "" if args.model == "sd3-nano" else Path(args.model).name.replace("-", "_") + "_"
    grid_dir = f"{prefix}teacher_grids"
    (out / grid_dir).mkdir(parents=True, exist_ok=True)
    head = ("| T5 | CFG | steps | ShapesEval [95% CI] | held-out [95% CI] | " + " | ".join(CATEGORIES)
            + " | FD [95% CI] | precision | recall | ms/img |")
    lines = [head, "|" + "---|" * (len(CATEGORIES) + 9)]
    results, written = {}, []
    cfg_scale = guidance_of(read_run_settings(folder))
    first = load_pipeline(folder, kinds=tuple(KINDS.values()))
    pipes = {False: first}
    if type(first).__name__ == "StableDiffusion3Pipeline":  # T5-free variant: SD3 only
        pipes[True] = load_pipeline(folder, drop_t5=True)
    has_t5 = any(type(getattr(first, n, None)).__name__.startswith("T5") for n in ("text_encoder", "text_encoder_3"))
    for drop_t5, pipe in pipes.items():
        t5_cell = ("no" if drop_t5 else "yes") if has_t5 else "none"  # a UNet teacher has no T5 to drop
        for guidance in (cfg_scale, 1.0):
            rows = {}
            for steps in [int(s) for s in args.steps.split(",")]:
                key = f"t5={'no' if drop_t5 else 'yes'} cfg={guidance} steps={steps}"
                print("=", key, flush=True)
                r = evaluate_seeds(folder, seeds, args.n_per_category, steps=steps, guidance=guidance, pipe=pipe)
                rows[f"{steps} steps"] = r.pop("images")
                results[key] = r
                tr, ho = r["train"], r["heldout"]
                cats = " | ".join(f"{tr['categories'].get(c, float('nan')):.2f}" for c in CATEGORIES)
                lines.append(f"| {t5_cell} | {guidance} | {steps} | {format_score(tr)} | "
                             f"{format_score(ho)} | {cats} | {format_fd(tr)} | "
                             f"{tr.get('precision', float('nan')):.2f} | {tr.get('recall', float('nan')):.2f} | "
                             f"{r['seconds_per_image'] * 1000:.1f} |")
            name = f"{grid_dir}/t5_{'no' if drop_t5 else 'yes'}_cfg_{guidance}.png"
            comparison_grid(rows, out / name, n=12)
            written.append(name)
    starts = tuple(float(t) for t in args.starts.split(",") if t.strip())
    noised_md = ""
    if starts:
        per_seed = [noised_start_scores(load_setup(folder, pipe=pipes[False]), starts,
                                        n_per_category=args.n_per_category, seed=s) for s in seeds]
        noised = {t: sum(p[t] for p in per_seed) / len(per_seed) for t in starts}  # mean over the seed sets
        results["noised_start"] = {str(k): v for k, v in noised.items()}
        noised_md = ("\n\n## Where the teacher loses the prompt\n\nShapesEval (train split) of the teacher's ODE "
                     "(its CFG scale, 20 Euler steps) started from real images noised to t0 "
                     f"(`flashdistill.eval.noised_start`), mean over seed sets {seeds}; t0 = 1 is plain generation."
                     "\n\n| t0 | " + " | ".join(f"{t:g}" for t in starts) + " |\n|---|" + "---|" * len(starts)
                     + "\n| ShapesEval | " + " | ".join(f"{noised[t]:.3f}" for t in starts) + " |")
    cmd = "python benchmarks/teacher_report.py " + " ".join(sys.argv[1:])
    for old in (out / grid_dir).glob("*.png"):  # grids of settings this run did not produce are stale
        if f"{grid_dir}/{old.name}" not in written:
            old.unlink()
    grids = "\n".join(f"![{Path(name).stem}]({name})" for name in written)
    (out / f"{prefix}teacher_report.md").write_text(
        f"# {args.model} teacher report\n\nRegenerate: `{cmd}` (means over evaluation seed sets {seeds}, "
        f"{args.n_per_category} prompts per category and split each, with 95% bootstrap intervals; FD on the train "
        "split against 512 real Shapes images, Student-t interval over the sets).\n\n" + "\n".join(lines) + noised_md
        + "\n\nSample grids (rows: step counts; same prompts and seeds):\n\n" + grids + "\n")
    (out / f"{prefix}teacher_report.json").write_text(scores_json(results))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
