"""Regenerate the Flash Diffusion results on SD3-nano (docs/results/flash_diffusion_nano.*).

    .venv/bin/python benchmarks/flash_diffusion_nano.py [--iters 300] [--ablations all|name,name]

Renders and encodes real Shapes scenes, trains the LoRA student of ``configs/flash_diffusion/nano.yaml`` and the
paper's Fig. 5 ablations at the same number of iterations (each a YAML derived from nano.yaml, written next to its
run, with the keys the change makes unused removed), then judges the teacher (50 steps CFG, 4- and 2-step Euler),
the student at 1, 2 and 4 steps and every ablation at 4 steps on the same prompts and seeds. Every trained folder
that exists is reused, and every judged row is kept under <work>/eval, so an interrupted run resumes; rows whose model
was not trained are left out (and listed). The report adds paired intervals (each ablation against the full
student) and checks nano.yaml's measured choices (``--choices``) on selection seed sets kept apart from the
reported ones. ``--sd35-flash`` also trains SD3.5-Flash's demo-sized 4-step student on the same teacher for the
side-by-side table; ``--name`` writes the report under another file name, so that the side-by-side alone
(``--ablations none --choices '' --sd35-flash --name flash_vs_sd35_flash_nano``) does not replace the ablation table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "configs" / "flash_diffusion"
FD = [sys.executable, "-m", "flashdistill.cli"]
DISC_KEYS = ["adv_loss", "disc_blocks", "disc_t_levels", "disc_hidden", "disc_optim"]
DMD_KEYS = ["dmd_fake", "dmd_t_range"]
ZERO = [0.0, 0.0, 0.0, 0.0]
# name -> (label, changes, keys to drop): Fig. 5 of the paper, at equal iterations
ABLATIONS = {
    "distill_only": ("loss: distillation only", {"adv_weights": ZERO, "dmd_weights": ZERO}, DISC_KEYS + DMD_KEYS),
    "distill_adv": ("loss: distillation + adversarial", {"dmd_weights": ZERO}, DMD_KEYS),
    "distill_dmd": ("loss: distillation + DMD", {"adv_weights": ZERO}, DISC_KEYS),
    "gan_hinge": ("GAN loss: hinge", {"adv_loss": "hinge"}, []),
    "gan_ns": ("GAN loss: non-saturating", {"adv_loss": "non_saturating"}, []),
    "perceptual": ("distillation loss: perceptual (FD network)", {"distill_loss": "perceptual"}, []),
    "fixed_guidance": ("guidance fixed at the teacher's 2.5", {"guidance_range": [2.5, 2.5]}, []),
    "K_32": ("K = 32", {"K": 32}, []),
    "K_64": ("K = 64", {"K": 64}, []),
    "pi_uniform": ("π(t): uniform on the grid", {"timestep_dist": "uniform"}, ["timestep_var"]),
    "pi_gaussian": ("π(t): broad Gaussian modes (σ = K/8)", {"timestep_var": 4.0}, []),
    "pi_sharp": ("π(t): sharp modes (var 0.05)", {"timestep_var": 0.05}, []),
    # nano.yaml takes the teacher's shifted grid (grid_shift: null); the ablation is the uniform one
    "grid_uniform": ("grid and sigmas uniform in flow time (grid_shift 1)", {"grid_shift": 1.0}, []),
}


def sh(args: list) -> dict:
    """Run a command; return its wall seconds and the peak resident memory of that process (MiB)."""
    print("+", " ".join(map(str, args)), flush=True)
    t0 = time.time()
    proc = subprocess.Popen([str(a) for a in args], cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args)
    return {"seconds": time.time() - t0, "peak_rss_mib": usage.ru_maxrss / 1024}  # Linux: ru_maxrss in KiB


def needs_training(path: Path, cfg: dict, out: Path) -> bool:
    """Write ``cfg`` to ``path`` unless ``out`` was already trained from exactly that config (then False); a
    student trained from another config (the shipped one changed) is removed and retrained."""
    text = f"# flashdistill distill --config {path}\n" + yaml.safe_dump(cfg, sort_keys=False)
    if (out / "flashdistill.json").exists():
        if path.is_file() and path.read_text() == text:
            print(f"= {out} exists with the same config, skipped", flush=True)
            return False
        print(f"= {out} was trained with another config: retrained", flush=True)
        shutil.rmtree(out)
    path.write_text(text)
    return True


def train(w: Path, name: str, changes: dict, drop: list, iters: int, data: Path) -> Path:
    out = w / name
    cfg = yaml.safe_load((CFG / "nano.yaml").read_text())
    cfg.update(changes)
    for key in drop:
        cfg.pop(key, None)
    cfg.update(data=str(data), out=str(out), phase_every=-(-iters // 4))
    cfg["train"] = {**cfg["train"], "run_dir": str(w / f"run_{name}"), "max_steps": iters, "overwrite": True,
                    "log": {"progress_bar": False, "every": 5}}
    path = w / f"{name}.yaml"
    if not needs_training(path, cfg, out):
        return out
    cost = sh(FD + ["distill", "--config", path])
    (w / f"run_{name}" / "cost.json").write_text(json.dumps(cost) + "\n")
    return out


def judged(cache: Path, key: str, folder, seeds, n: int, steps, guidance, label: str) -> dict:
    """One row under the protocol, kept in ``cache`` (scores + images, keyed by the row, seeds and prompts per
    category) so that a crash or a stop loses no finished row; a retrained student's rows go with its folder."""
    import torch

    from flashdistill.eval.model_eval import evaluate_seeds

    path = cache / f"{key}_{'-'.join(map(str, seeds))}_{n}.pt"
    written = Path(folder) / "flashdistill.json"  # rewritten whenever the folder is (re)trained or exported
    if path.exists() and (not written.exists() or path.stat().st_mtime >= written.stat().st_mtime):
        res = torch.load(path, weights_only=False)
        if res.pop("folder", str(folder)) == str(folder):  # a row of another teacher (--teacher) is judged again
            return res
    print(f"= {cache.parent.name}: evaluating {label} on seed sets {seeds}", flush=True)
    res = evaluate_seeds(folder, seeds, n, steps=steps, guidance=guidance)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({**res, "folder": str(folder)}, path)
    return res


def sd35_flash(w: Path, images: Path) -> Path:
    """The SD3.5-Flash 4-step student of the demo's schedule (stage 1 150 + stage 2 150 iterations) on the same
    teacher and the same captions (it distils from teacher samples, not from the images)."""
    out = w / "sd35_flash"
    if (out / "flashdistill.json").exists():
        return out
    sd35 = ROOT / "configs" / "sd35_flash"
    prompts = w / "sd35_prompts.jsonl"
    lines = [json.dumps({"prompt": json.loads(line)["prompt"]}) for line in
             (images / "captions.jsonl").read_text().splitlines()[:384]]
    prompts.write_text("\n".join(lines) + "\n")
    data = w / "sd35_data"
    costs = {"data": sh(FD + ["generate-data", "--config", sd35 / "nano_data.yaml", "--prompts", prompts,
                              "--out", data, "--steps", "20"])}
    quiet = ["train.overwrite=true", "train.log.progress_bar=false", f"data={data}"]
    costs["pretrain"] = sh(FD + ["distill", "--config", sd35 / "nano_pretrain.yaml", f"out={w / 'sd35_s1'}",
                                 f"train.run_dir={w / 'run_sd35_s1'}", "train.max_steps=150"] + quiet)
    costs["dmd"] = sh(FD + ["distill", "--config", sd35 / "nano_dmd.yaml", f"out={out}",
                            f"init_student={w / 'sd35_s1'}", f"train.run_dir={w / 'run_sd35_dmd'}",
                            "train.max_steps=150", "proxy_updates=3", "warmup_noisier=20"] + quiet)
    (w / "sd35_cost.json").write_text(json.dumps(costs, indent=2) + "\n")
    return out


def seconds_per_iteration(run_dir: Path) -> float | None:
    """Mean seconds per iteration after the first quarter of the log (the start-up). A resumed run appends rows
    whose ``time`` restarts at 0: only the intervals inside one process count."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [(r["step"], r["time"]) for r in rows if "time" in r]
    pairs = [(s1 - s0, t1 - t0) for (s0, t0), (s1, t1) in zip(times[len(times) // 4:], times[len(times) // 4 + 1:])
             if s1 > s0 and t1 >= t0]
    steps, seconds = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    return seconds / steps if steps else None


def side_by_side(w: Path, results: dict, params: dict, cost: dict) -> str:
    """Flash Diffusion's LoRA student vs SD3.5-Flash's full student on the same teacher and machine."""
    from flashdistill.eval.protocol import format_fd, format_score

    flash_cost = w / "run_student" / "cost.json"
    flash = json.loads(flash_cost.read_text()) if flash_cost.exists() else {}
    sd35 = json.loads((w / "sd35_cost.json").read_text()) if (w / "sd35_cost.json").exists() else {}
    if not sd35:
        return ""
    from safetensors import safe_open

    weights = next((w / "sd35_flash" / "transformer").glob("*.safetensors"))
    with safe_open(str(weights), "pt") as f:
        full = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    fl = next(r for k, r in results.items() if k.startswith("LoRA student, 4"))
    sd = next(r for k, r in results.items() if k.startswith("SD3.5-Flash"))
    train_s = sum(v["seconds"] for k, v in sd35.items() if k != "data")
    rows = [
        "| recipe | ShapesEval [95% CI] | FD [95% CI] | trainable parameters | training s (iterations) | "
        "s / iteration | peak RSS MiB |", "|---|---|---|---|---|---|---|",
        f"| Flash Diffusion (LoRA) | {format_score(fl['train'])} | {format_fd(fl['train'])} | "
        f"{params.get('trainable', 0):,} | {flash.get('seconds', float('nan')):.0f} | {cost.get('student') or 0:.2f} | "
        f"{flash.get('peak_rss_mib', float('nan')):.0f} |",
        f"| SD3.5-Flash (full, stage 1 + 2) | {format_score(sd['train'])} | {format_fd(sd['train'])} | {full:,} | "
        f"{train_s:.0f} (150 + 150) | {sd35['pretrain']['seconds'] / 150:.2f} + {sd35['dmd']['seconds'] / 150:.2f} | "
        f"{max(v['peak_rss_mib'] for v in sd35.values()):.0f} |"]
    return ("\n## Side by side: Flash Diffusion vs SD3.5-Flash on the same teacher and machine\n\nSD3.5-Flash also "
            f"spends {sd35['data']['seconds']:.0f} s generating its 384 teacher samples with trajectories (20 steps); "
            "Flash Diffusion noises real pairs and solves the teacher inside each iteration. Training seconds include "
            "loading; peak RSS is each training process's own.\n\n" + "\n".join(rows) + "\n")


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/flash_diffusion_nano")
    ap.add_argument("--iters", type=int, default=300, help="iterations of the student and of every ablation")
    ap.add_argument("--images", type=int, default=2048, help="real Shapes pairs to train on")
    ap.add_argument("--n-per-category", type=int, default=16)
    ap.add_argument("--seeds", default="1,2,3,4", help="evaluation seed sets")
    ap.add_argument("--ablations", default="all", help="'all', 'none' or a comma list of " + ", ".join(ABLATIONS))
    ap.add_argument("--sd35-flash", action="store_true", help="also train SD3.5-Flash's demo-sized 4-step student "
                    "on the same teacher and captions, for the side-by-side table")
    ap.add_argument("--results", default="docs/results")
    ap.add_argument("--name", default="flash_diffusion_nano", help="file name of the report, its JSON and pictures")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="train nothing: judge the folders that exist (while "
                    "another invocation is still training the rest)")
    ap.add_argument("--selection-seeds", default="5,6", help="seed sets on which the shipped choices are checked "
                    "against their ablation (kept apart from --seeds)")
    ap.add_argument("--choices", default="grid_uniform", help="ablations that undo a choice of nano.yaml made by "
                    "measurement; each is compared with the student on --selection-seeds")
    args = ap.parse_args()
    names = (list(ABLATIONS) if args.ablations == "all" else [] if args.ablations == "none"
             else [n for n in args.ablations.split(",") if n])
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        ap.error(f"unknown ablations {unknown}; choose from {list(ABLATIONS)}")
    loose = [c for c in args.choices.split(",") if c and c not in names]
    if loose:
        ap.error(f"--choices {loose} are not among the ablations of this run ({names})")
    w = ROOT / args.work
    w.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report(args, w, names)
    data = w / "data"
    if not (data / "index.json").exists():
        sh(FD + ["shapes-prompts", "--images", w / "images", "--n", args.images])
        sh(FD + ["generate-data", "--config", CFG / "nano_data.yaml", "--images", w / "images", "--out", data])
    train(w, "student", {}, [], args.iters, data)
    for name in names:
        train(w, name, *ABLATIONS[name][1:], args.iters, data)
    if args.sd35_flash:
        sd35_flash(w, w / "images")
    if args.train_only:
        return 0
    return report(args, w, names)


def report(args, w: Path, names: list[str]) -> int:
    from flashdistill.demo import comparison_grid
    from flashdistill.eval.model_eval import scores_json
    from flashdistill.eval.plots import line_plot, read_metrics
    from flashdistill.eval.protocol import parse_seeds, results_table, summary_row
    from flashdistill.pipelines.folders import guidance_of, read_run_settings
    from flashdistill.shapes import CATEGORIES
    from flashdistill.shapes.nano import teacher_path

    teacher = teacher_path()
    g = guidance_of(read_run_settings(teacher))
    student = w / "student"
    rows = {f"teacher, 50 steps, CFG {g:g}": ("teacher_50", teacher, 50, None),
            f"teacher, 4 Euler steps, CFG {g:g}": ("teacher_euler_4", teacher, 4, None),
            f"teacher, 2 Euler steps, CFG {g:g}": ("teacher_euler_2", teacher, 2, None),
            "LoRA student, 4 steps": ("student_4", student, None, None),
            "LoRA student, 2 steps": ("student_2", student, 2, 1.0),
            "LoRA student, 1 step": ("student_1", student, 1, 1.0)}
    if args.sd35_flash:
        rows["SD3.5-Flash student, 4 steps (demo schedule)"] = ("sd35_flash_4", w / "sd35_flash", None, None)
    for name in names:
        rows[f"ablation: {ABLATIONS[name][0]}"] = (name, w / name, None, None)
    seeds = parse_seeds(args.seeds)
    results, pictures, summary, missing = {}, {}, {}, []
    for label, (key, folder, steps, guidance) in rows.items():
        if not (folder / "flashdistill.json").exists():
            missing.append(key)
            continue
        res = judged(w / "eval", key, folder, seeds, args.n_per_category, steps, guidance, label)
        pictures[label] = res.pop("images")
        results[label] = res
        summary[key] = {"label": label, **summary_row(res)}
    paired = paired_lines(results, rows, summary)
    chosen = _selection_results(args, w, names)
    selection = selection_check(args, chosen)
    cost = {}
    for key, run_dir in [("student", w / "run_student")] + [(n, w / f"run_{n}") for n in names]:
        if (run_dir / "metrics.jsonl").exists():
            cost[key] = seconds_per_iteration(run_dir)
    params = json.loads((student / "flashdistill.json").read_text()).get("parameters", {})
    side = side_by_side(w, results, params, cost) if args.sd35_flash else ""
    lines = results_table(results, CATEGORIES)
    out = ROOT / args.results
    out.mkdir(parents=True, exist_ok=True)
    comparison_grid(pictures, out / f"{args.name}_grid.png", n=10)
    curves = []
    for key in ("distill", "adv", "dmd", "disc"):
        series = read_metrics(w / "run_student" / "metrics.jsonl", key)
        if series[0]:
            curves.append(line_plot({key: series}, out / f"{args.name}_{key}.png",
                                    title=f"LoRA student: {key}").name)
    cmd = "python benchmarks/flash_diffusion_nano.py " + shlex.join(a for a in sys.argv[1:] if a != "--report-only")
    cost_line = ", ".join(f"{k} {v:.2f}" for k, v in cost.items() if v)
    text = (f"# Flash Diffusion on SD3-nano\n\nRegenerate: `{cmd}` (student{' and every ablation' if names else ''}: "
            f"{args.iters} iterations, real Shapes pairs). Every score is the mean over evaluation seed sets {seeds} "
            f"({args.n_per_category} prompts per category each; the same prompts and noises for every model, never a "
            "training sample's noise) with a 95% bootstrap interval (FD: Student-t over the sets).\n\n"
            f"LoRA student: {params.get('trainable', 0):,} trainable of {params.get('total', 0):,} teacher parameters "
            f"({100 * params.get('trainable', 0) / max(params.get('total', 1), 1):.1f}%).\n\n"
            + "\n".join(lines) + "\n\n" + paired + selection
            + f"\nSeconds per training iteration (2 CPU cores): {cost_line}.\n" + side
            + (f"\nNot trained in this run (no row): {', '.join(missing)}.\n" if missing else "")
            + f"\n![grid]({args.name}_grid.png)\n\n## Loss curves\n\n"
            + "\n".join(f"![{c}]({c})" for c in curves) + "\n")
    (out / f"{args.name}.md").write_text(text)
    (out / f"{args.name}.json").write_text(json.dumps({
        "summary": summary, "selection": selection_json(args, chosen), "parameters": params,
        "seconds_per_iteration": cost, "missing": missing,
        "protocol": {"seeds": seeds, "n_per_category": args.n_per_category, "iterations": args.iters,
                     "command": cmd}, "results": json.loads(scores_json(results))}, indent=2) + "\n")
    print(text)
    return 0


def _delta(a: dict, b: dict, scale: float = 1.0) -> tuple[float, float, float]:
    from flashdistill.eval.protocol import paired_difference

    return paired_difference(a["train"]["cells"], b["train"]["cells"], scale_b=scale)


def _verdict(d: tuple[float, float, float]) -> str:
    return "no measurable effect" if d[1] <= 0 <= d[2] else ("above 0" if d[1] > 0 else "below 0")


def paired_lines(results: dict, rows: dict, summary: dict) -> str:
    """Paired intervals (the same prompts and noises): the students against the teacher's Euler at as many steps and
    against 0.9x the 50-step teacher, and every other row against the full LoRA student at 4 steps. An interval
    holding 0 is reported as "no measurable effect", not as a direction."""
    by_key = {key: results[label] for label, (key, *_rest) in rows.items() if label in results}
    if "student_4" not in by_key:
        return ""
    out = ["## Paired differences (95% bootstrap over prompts, the same prompts and noises)", "",
           "| comparison | Δ ShapesEval [95% CI] | verdict |", "|---|---|---|"]

    def add(key: str, text: str, d: tuple[float, float, float], tag: str) -> None:
        summary[key][tag] = {"mean": d[0], "ci95": [d[1], d[2]]}
        out.append(f"| {text} | {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] | {_verdict(d)} |")

    for n in (4, 2):
        if f"student_{n}" in by_key and f"teacher_euler_{n}" in by_key:
            add(f"student_{n}", f"student, {n} steps − teacher's {n}-step Euler", _delta(
                by_key[f"student_{n}"], by_key[f"teacher_euler_{n}"]), "delta_vs_teacher_euler")
    if "teacher_50" in by_key:
        add("student_4", "student, 4 steps − 0.9 × teacher, 50 steps", _delta(
            by_key["student_4"], by_key["teacher_50"], 0.9), "delta_vs_0.9_teacher_50")
    for label, (key, *_rest) in rows.items():
        if key in by_key and key not in ("student_4", "student_2", "student_1") and not key.startswith("teacher"):
            add(key, f"{label} − the full student, 4 steps", _delta(by_key[key], by_key["student_4"]),
                "delta_vs_student_4")
    return "\n".join(out) + "\n"


def _selection_results(args, w: Path, names: list[str]) -> dict:
    """The student and each measured choice undone, judged on the selection seed sets; each choice carries its
    paired difference (student − it), bootstrapped once here for both the table and the JSON."""
    from flashdistill.eval.protocol import parse_seeds

    seeds = parse_seeds(args.selection_seeds)
    chosen = [c for c in args.choices.split(",") if c and c in names and (w / c / "flashdistill.json").exists()]
    if not chosen:
        return {}
    res = {"student": judged(w / "eval", "student_4", w / "student", seeds, args.n_per_category, None, None,
                             "LoRA student, 4 steps")}
    for c in chosen:
        res[c] = judged(w / "eval", c, w / c, seeds, args.n_per_category, None, None, ABLATIONS[c][0])
        res[c]["delta"] = _delta(res["student"], res[c])
    return res


def selection_json(args, res: dict) -> dict:
    from flashdistill.eval.protocol import summary_row

    out = {k: summary_row(r) for k, r in res.items()}
    for c, r in res.items():
        if c != "student":
            d = r["delta"]
            out[c]["delta_student_minus_this"] = {"mean": d[0], "ci95": [d[1], d[2]]}
    return {"seeds": args.selection_seeds, **out} if out else {}


def selection_check(args, res: dict) -> str:
    """The choices nano.yaml made by measurement, checked on seed sets kept apart from the reported ones."""
    from flashdistill.eval.protocol import format_score

    if not res:
        return ""
    out = [f"## The shipped choices on the selection seed sets {args.selection_seeds} (not the reported ones)", "",
           "| choice undone | its ShapesEval | the student's | student − it (paired) | verdict |",
           "|---|---|---|---|---|"]
    for c, r in res.items():
        if c != "student":
            d = r["delta"]
            out.append(f"| {ABLATIONS[c][0]} | {format_score(r['train'])} | {format_score(res['student']['train'])} "
                       f"| {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] | {_verdict(d)} |")
    return "\n" + "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
