"""Regenerate docs/results/flash_diffusion_backbones.md + .json: Flash Diffusion on every backbone of the Shapes world.

    .venv/bin/python benchmarks/flash_diffusion_backbones.py [--backbones sd3,unet,pixart] [--iters 600]
        [--teacher unet=runs/unet_ck ...]

For each backbone (SD3-nano: MM-DiT, rectified flow; UNet-nano: a StableDiffusionPipeline; PixArt-nano: a
PixArtAlphaPipeline) the same real Shapes pairs are encoded by that teacher, a LoRA student is trained with its
shipped config (configs/flash_diffusion/{nano,unet_nano,pixart_nano}.yaml) for the same number of iterations, and
the teacher at 50 steps with CFG, its 4- and 2-step sampler (Euler on its own grid: the flow sigmas, or a VP
teacher's trailing DDIM timesteps) and the student at 4, 2 and 1 steps are judged on the same prompts and noises.
Also reported: trainable parameters and their fraction, seconds per iteration. Trained folders are reused, so an
interrupted run resumes. ``--teacher NAME=FOLDER`` replaces a shipped teacher (e.g. an exported checkpoint);
``--set KEY=VALUE`` changes a key of every student's config (the value read as YAML). A run on some backbones
keeps the other backbones' rows of the results file it rewrites (each row names the command that made it), so
one backbone can be redone without retraining the others; rows measured under another protocol are dropped.
``--merge-from JSON`` adds the backbones of another results file of this script (e.g. a run at another budget).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml
from flash_diffusion_nano import FD, ROOT, judged, needs_training, seconds_per_iteration, sh

CFG = ROOT / "configs" / "flash_diffusion"
# backbone -> (shipped teacher name, recipe config, data config)
BACKBONES = {"sd3": ("sd3-nano", "nano.yaml", "nano_data.yaml"),
             "unet": ("unet-nano", "unet_nano.yaml", "unet_nano_data.yaml"),
             "pixart": ("pixart-nano", "pixart_nano.yaml", "pixart_nano_data.yaml")}


def prepare(w: Path, bb: str, teacher: str, images: Path, iters: int, overrides: dict) -> Path:
    """Encode the pairs with this teacher and train its LoRA student (skipped when they exist)."""
    _, config, data_config = BACKBONES[bb]
    data, out = w / bb / "data", w / bb / "student"
    # always called: a complete folder is checked against this teacher's weights (refused, naming the folder, when
    # the teacher changed) and otherwise left as it is
    sh(FD + ["generate-data", "--config", CFG / data_config, "--images", images, "--out", data, f"model={teacher}"])
    cfg = yaml.safe_load((CFG / config).read_text())
    cfg.update(teacher=teacher, data=str(data), out=str(out), phase_every=-(-iters // 4))
    cfg.update(overrides)
    cfg["train"] = {**cfg["train"], "run_dir": str(w / bb / "run"), "max_steps": iters, "overwrite": True,
                    "log": {"progress_bar": False, "every": 5}}
    path = w / bb / "student.yaml"
    if not needs_training(path, cfg, out):
        return out
    cost = sh(FD + ["distill", "--config", path])
    (w / bb / "cost.json").write_text(json.dumps(cost) + "\n")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", default="sd3,unet,pixart", help="comma list of " + ", ".join(BACKBONES))
    ap.add_argument("--teacher", action="append", default=[], help="NAME=FOLDER: another teacher for a backbone")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a key of every student's config, the value read as YAML (e.g. lora_rank=32)")
    ap.add_argument("--work", default="runs/flash_diffusion_backbones")
    ap.add_argument("--iters", type=int, default=600, help="iterations of every student")
    ap.add_argument("--images", type=int, default=2048, help="real Shapes pairs to train on")
    ap.add_argument("--n-per-category", type=int, default=16)
    ap.add_argument("--seeds", default="1,2,3,4", help="evaluation seed sets")
    ap.add_argument("--results", default="docs/results")
    ap.add_argument("--merge-from", action="append", default=[], metavar="JSON",
                    help="another results file of this script: its backbones' rows join the table (first wins)")
    ap.add_argument("--train-only", action="store_true")
    args = ap.parse_args()
    backbones = [b for b in args.backbones.split(",") if b]
    if any(b not in BACKBONES for b in backbones):
        ap.error(f"--backbones {args.backbones}: choose from {', '.join(BACKBONES)}")
    teachers = {b: BACKBONES[b][0] for b in backbones}
    for item in args.teacher:
        name, _, folder = item.partition("=")
        if name not in BACKBONES or not folder:
            ap.error(f"--teacher {item}: expected NAME=FOLDER with NAME one of {', '.join(BACKBONES)}")
        teachers[name] = str(Path(folder).resolve())
    overrides = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not key or not eq or key in ("teacher", "data", "out", "train"):
            ap.error(f"--set {item}: expected KEY=VALUE with KEY a student config key (not teacher/data/out/train)")
        overrides[key] = yaml.safe_load(value)
    for m in args.merge_from:  # before any training: a wrong name should not wait for the report
        if not (ROOT / m).is_file():
            ap.error(f"--merge-from {m}: no such results file")
    w = ROOT / args.work
    images = w / "images"
    if not (images / "captions.jsonl").exists():
        sh(FD + ["shapes-prompts", "--images", images, "--n", args.images])
    students = {b: prepare(w, b, teachers[b], images, args.iters, overrides) for b in backbones}
    if args.train_only:
        return 0
    return report(args, w, teachers, students)


def kept_rows(sources: list[Path], redone, seeds, n: int, asked: int = 0) -> tuple[dict, dict, dict]:
    """Summary, costs and results of the backbones not ``redone``, each from the first of ``sources`` (results
    files of this script) that has it, when that file was measured under the same protocol (seed sets, prompts
    per category). The first ``asked`` sources were named by the user (``main`` checked that they exist): measured
    otherwise, they stop the run (naming the file); a later one is skipped then, or when it does not exist."""
    summary, costs, results = {}, {}, {}
    for i, path in enumerate(sources):
        if not path.exists():
            continue
        old = json.loads(path.read_text())
        protocol = old.get("protocol", {})
        if protocol.get("seeds") != list(seeds) or protocol.get("n_per_category") != n:
            why = (f"{path}: measured on seed sets {protocol.get('seeds')} with {protocol.get('n_per_category')} "
                   f"prompts per category, this run on {list(seeds)} with {n}")
            if i < asked:
                raise SystemExit(f"--merge-from {why}: its rows cannot join this table")
            print(f"{why}; its rows are not kept", flush=True)
            continue
        for bb in old.get("summary", {}):
            if bb in redone or bb in summary:
                continue
            summary[bb] = old["summary"][bb]
            cost = old["costs"][bb]
            picture = (str(path.parent / cost["picture"]) if cost.get("picture")
                       else _picture_of(path, bb, len(old["summary"])))  # absolute here, relative when written
            costs[bb] = {"command": protocol.get("command", ""), "iterations": protocol.get("iterations"),
                         **cost, "picture": picture}
            results.update({k: v for k, v in old.get("results", {}).items() if k.split(":")[0] == bb})
    return summary, costs, results


def _picture_of(path: Path, bb: str, n_backbones: int) -> str | None:
    """The sample grid written beside a results file for backbone ``bb`` (None when there is none)."""
    names = [f"{path.stem}_{bb}.png"] if path.stem == "flash_diffusion_backbones" else []
    names += [f"{path.stem}.png"] if n_backbones == 1 else []
    return next((str(path.parent / name) for name in names if (path.parent / name).exists()), None)


def table_row(bb: str, row: dict) -> str:
    from flashdistill.eval.protocol import format_fd, format_score

    d = row.get("delta_vs_teacher_sampler")
    delta = "–" if d is None else f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
    heldout = ({"shapes_eval": row["heldout"], "ci95": row["heldout_ci95"]} if "heldout" in row else None)
    return (f"| {bb} | {row['label']} | {format_score(row)} | {delta} | "
            f"{'–' if heldout is None else format_score(heldout)} | {format_fd(row)} | {row['ms_per_image']:.1f} |")


def report(args, w: Path, teachers: dict, students: dict) -> int:
    from flashdistill.bench.report import portable
    from flashdistill.demo import comparison_grid
    from flashdistill.eval.model_eval import scores_json
    from flashdistill.eval.protocol import paired_difference, parse_seeds, summary_row
    from flashdistill.pipelines.folders import guidance_of, read_run_settings, resolve_model

    seeds = parse_seeds(args.seeds)
    out = ROOT / args.results
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/flash_diffusion_backbones.py " + " ".join(sys.argv[1:])
    sources = [ROOT / m for m in args.merge_from] + [out / "flash_diffusion_backbones.json"]
    summary, costs, kept = kept_rows(sources, students, seeds, args.n_per_category, asked=len(args.merge_from))
    results = {}
    for bb, student in students.items():
        teacher = resolve_model(teachers[bb])
        g = guidance_of(read_run_settings(teacher))
        rows = {"teacher_50": (f"teacher, 50 steps, CFG {g:g}", teacher, 50, None),
                "teacher_euler_4": (f"teacher, 4 steps (its own sampler), CFG {g:g}", teacher, 4, None),
                "teacher_euler_2": (f"teacher, 2 steps (its own sampler), CFG {g:g}", teacher, 2, None),
                "student_4": ("LoRA student, 4 steps", student, None, None),
                "student_2": ("LoRA student, 2 steps", student, 2, 1.0),
                "student_1": ("LoRA student, 1 step", student, 1, 1.0)}
        summary[bb], pictures = {}, {}
        for key, (label, folder, steps, guidance) in rows.items():
            res = judged(w / bb / "eval", key, folder, seeds, args.n_per_category, steps, guidance, label)
            pictures[label] = res.pop("images")
            results[f"{bb}: {label}"] = res
            summary[bb][key] = {"label": label, **summary_row(res)}
            base = results.get(f"{bb}: {rows.get('teacher_euler_' + key[-1], ('',))[0]}")
            if key.startswith("student_") and base is not None:  # the same prompts and noises: a paired interval
                d = paired_difference(res["train"]["cells"], base["train"]["cells"])
                summary[bb][key]["delta_vs_teacher_sampler"] = {"mean": d[0], "ci95": [d[1], d[2]]}
        comparison_grid(pictures, out / f"flash_diffusion_backbones_{bb}.png", n=10)
        info = json.loads((student / "flashdistill.json").read_text())
        run_dir = w / bb / "run"
        shown = portable(str(Path(teacher).resolve()), ROOT)  # no machine paths in committed results
        costs[bb] = {"command": cmd, "iterations": args.iters,
                     "picture": str(out / f"flash_diffusion_backbones_{bb}.png"),
                     "parameters": info.get("parameters", {}),
                     "teacher": shown,
                     "seconds_per_iteration": seconds_per_iteration(run_dir) if run_dir.exists() else None}
    order = [bb for bb in BACKBONES if bb in summary]
    for bb in order:  # pictures relative to the results folder: no machine paths in committed results
        if costs[bb].get("picture"):
            costs[bb]["picture"] = os.path.relpath(costs[bb]["picture"], out)
    lines = ["| backbone | model | ShapesEval [95% CI] | Δ vs the teacher's sampler at as many steps (paired) | "
             "held-out [95% CI] | FD [95% CI] | ms/img |", "|---|---|---|---|---|---|---|"]
    lines += [table_row(bb, row) for bb in order for row in summary[bb].values()]
    params = ["| backbone | teacher | iterations | trainable parameters | of the teacher's | fraction | "
              "s / iteration |", "|---|---|---|---|---|---|---|"]
    for bb in order:
        c = costs[bb]
        p, spi = c["parameters"], c["seconds_per_iteration"]
        params.append(f"| {bb} | `{Path(c['teacher']).name}` | {c.get('iterations')} | {p.get('trainable', 0):,} | "
                      f"{p.get('total', 0):,} | {100 * p.get('trainable', 0) / max(p.get('total', 1), 1):.1f}% | "
                      f"{'–' if spi is None else f'{spi:.2f}'} |")
    commands = dict.fromkeys(costs[bb]["command"] for bb in order)  # in backbone order, each once
    made = "; ".join(f"`{c}` ({', '.join(bb for bb in order if costs[bb]['command'] == c)})" for c in commands)
    text = (f"# Flash Diffusion on every backbone of the Shapes world\n\nRegenerate: {made}. Every student is trained "
            "on the same real Shapes pairs with its backbone's shipped config (changed only by its command's --set), "
            f"for the iterations its table row gives. Scores are means over evaluation seed sets {seeds} "
            f"({args.n_per_category} prompts per category each; the same prompts and noises for every model, never a "
            "training sample's noise) with 95% bootstrap intervals (FD: Student-t over the sets). A VP teacher's "
            "few-step baseline is its own DDIM on the "
            "trailing timesteps; SD3-nano's is Euler on its shifted sigmas.\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(params) + "\n\n"
            + "\n".join(f"![{bb}]({costs[bb]['picture']})" for bb in order
                        if costs[bb].get("picture")) + "\n")
    (out / "flash_diffusion_backbones.md").write_text(text)
    (out / "flash_diffusion_backbones.json").write_text(json.dumps({
        "summary": {bb: summary[bb] for bb in order}, "costs": {bb: costs[bb] for bb in order},
        "protocol": {"seeds": seeds, "n_per_category": args.n_per_category, "iterations": args.iters,
                     "command": cmd},
        "results": {**kept, **json.loads(scores_json(results))}}, indent=2) + "\n")
    print(text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
