"""``flashdistill demo`` (what ``make demo`` runs): a short SD3.5-Flash distillation of the shipped SD3-nano teacher.

1. write Shapes prompts and let the teacher generate samples + trajectories at the 4-step grid;
2. stage 1 (trajectory guidance) and a short stage 2 (DMD with timestep sharing + adversarial heads), using the
   shipped configs ``configs/sd35_flash/nano_*.yaml`` with shorter schedules;
3. judge the teacher (25 steps, CFG), the teacher's own 4-step Euler and the 4-step student on the same prompts
   and seeds; write ``report.md`` and ``comparison.png`` into the run folder and print the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_args", "run"]

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "sd35_flash"


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=["sd35_flash", "flash_diffusion"], default="sd35_flash",
                        help="which paper's recipe to demonstrate (flash_diffusion: a LoRA student, "
                        "flashdistill.demo_flash)")
    parser.add_argument("--out", default=None, help="run folder for data, students and the report "
                        "(default runs/demo, or runs/demo_flash for --recipe flash_diffusion)")
    parser.add_argument("--teacher", default=None, help="teacher pipeline folder (default: the shipped SD3-nano)")
    parser.add_argument("--prompts", type=int, default=384, help="teacher samples (flash_diffusion: real Shapes "
                        "renders) to distil from")
    parser.add_argument("--pretrain-steps", type=int, default=150, help="sd35_flash: stage-1 iterations")
    parser.add_argument("--dmd-steps", type=int, default=150, help="sd35_flash: stage-2 iterations")
    parser.add_argument("--flash-steps", type=int, default=300, help="flash_diffusion: iterations (4 phases)")
    parser.add_argument("--n-per-category", type=int, default=16, help="evaluation prompts per category")
    parser.add_argument("--seeds", default="1,2,3,4",
                        help="evaluation seed sets: scores are their mean with a 95%% interval")


def _stage(name: str, overrides: list[str]):
    from .config import load_config
    from .recipes.sd35_flash import SD35FlashConfig, run_recipe

    cfg = load_config(SD35FlashConfig, CONFIGS / name, overrides + ["train.overwrite=true"])
    print(f"\n== {name}: {cfg.stage}, {cfg.train.max_steps} iterations -> {cfg.out}")
    run_recipe(cfg)


def teacher_data(cfg) -> Path:
    """``generate`` into the demo's own data folder. A folder written with other settings or by another teacher (an
    earlier demo, a shipped teacher since replaced) is regenerated, not refused: the demo owns it."""
    import shutil

    from .data.errors import SettingsMismatch
    from .data.generate import generate

    try:
        return generate(cfg)
    except SettingsMismatch as err:
        print(f"== {err}\n== regenerating it")
        shutil.rmtree(cfg.out)
        return generate(cfg)


def grid_columns(count: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``count`` images: the evaluation set is ordered by category, so every
    category shows (the first ``n`` would all be single objects)."""
    import numpy as np

    return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))


def comparison_grid(rows: dict[str, object], path: Path, n: int = 8) -> Path:
    """One row per setting (label at the left), ``n`` images each (``grid_columns``), upscaled 3x."""
    import numpy as np
    from PIL import Image, ImageDraw

    scale = 3
    first = next(iter(rows.values()))
    h, w = first.shape[1] * scale, first.shape[2] * scale
    columns = grid_columns(len(first), n)
    label_w = 8 + max(150, *(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(k)) for k in rows))
    canvas = Image.new("RGB", (label_w + len(columns) * w, len(rows) * h), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows.items()):
        draw.text((4, r * h + h // 2 - 6), label, fill="black")
        for c, i in enumerate(columns):
            tile = Image.fromarray(np.asarray(images[i])).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_w + c * w, r * h))
    canvas.save(path)
    return path


def evaluate_rows(settings: dict, seeds, n_per_category: int) -> tuple[dict, dict]:
    """``{label: (folder, steps, guidance)}`` -> ``(results, pictures)`` under the evaluation protocol."""
    from .eval.model_eval import evaluate_seeds

    results, pictures = {}, {}
    for label, (folder, steps, guidance) in settings.items():
        res = evaluate_seeds(folder, seeds, n_per_category, steps=steps, guidance=guidance)
        pictures[label] = res.pop("images")
        results[label] = res
    return results, pictures


def write_report(out: Path, title: str, results: dict, pictures: dict, seeds, n_per_category: int,
                 command: str) -> Path:
    """``report.md``, ``comparison.png`` and ``results.json`` of a demo; prints the table."""
    from .eval.model_eval import scores_json
    from .eval.protocol import format_fd, format_score
    from .shapes import eval_prompts

    lines = ["| setting | ShapesEval (train) [95% CI] | ShapesEval (held-out) [95% CI] | FD [95% CI] | ms / image |",
             "|---|---|---|---|---|"]
    for label, res in results.items():
        tr = res["train"]
        lines.append(f"| {label} | {format_score(tr)} | {format_score(res['heldout'])} | {format_fd(tr)} | "
                     f"{res['seconds_per_image'] * 1000:.1f} |")
    n_train = results[next(iter(results))]["train"]["n_prompts"]
    table = "\n".join(lines)
    grid = comparison_grid(pictures, out / "comparison.png")
    train_prompts = [p for p, _ in eval_prompts(n_per_category, seed=seeds[0])]
    columns = "\n".join(f"{c + 1}. {train_prompts[i]}" for c, i in enumerate(grid_columns(len(train_prompts), 8)))
    report = out / "report.md"
    report.write_text(f"# {title}\n\nMeans over evaluation seed sets {seeds} "
                      f"({n_train} train prompts; noises never those of the training data) with 95% bootstrap "
                      f"intervals (FD: Student-t over the sets).\n\n{table}\n\n![comparison](comparison.png)\n\n"
                      f"Same prompts and seeds in every row; the columns' prompts (seed set {seeds[0]}):\n\n"
                      f"{columns}\n\nRegenerate: `{command}`.\n")
    (out / "results.json").write_text(scores_json(results))
    print("\n" + table)
    print(f"\nreport: {report}  pictures: {grid}")
    return report


def run(args) -> int:
    if args.recipe == "flash_diffusion":
        from .demo_flash import run_flash

        return run_flash(args)
    args.out = args.out or "runs/demo"
    from .data.generate import GenerateConfig
    from .eval.protocol import parse_seeds
    from .pipelines.folders import guidance_of, read_run_settings
    from .shapes.nano import teacher_path
    from .shapes.prompt_file import write_prompts

    seeds = parse_seeds(args.seeds)
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = Path(args.teacher) if args.teacher else teacher_path()
    prompts = write_prompts(out / "prompts.jsonl", args.prompts, seed=0)
    print(f"== teacher {teacher}\n== generating {args.prompts} teacher samples with trajectories")
    teacher_data(GenerateConfig(out=str(out / "data"), prompts=str(prompts), model=str(teacher), num_steps=20,
                                guidance_scale=None, trajectory_grid=[1.0, 0.75, 0.5, 0.25, 0.0], shard_size=128,
                                batch_size=64))
    common = [f"data={out / 'data'}", f"teacher={teacher}"]
    _stage("nano_pretrain.yaml", common + [
        f"out={out / 'student_pretrain'}", f"train.max_steps={args.pretrain_steps}",
        f"train.run_dir={out / 'pretrain'}"])
    _stage("nano_dmd.yaml", common + [
        f"init_student={out / 'student_pretrain'}", f"out={out / 'student_4step'}",
        f"train.max_steps={args.dmd_steps}",
        "proxy_updates=3", "warmup_noisier=20", f"train.run_dir={out / 'dmd'}"])
    print(f"\n== evaluating on seed sets {seeds} (ShapesEval on train and held-out compositions, FD on train)")
    cfg_scale = guidance_of(read_run_settings(teacher))
    settings = {f"teacher, 25 steps, CFG {cfg_scale:g}": (teacher, 25, None),
                f"teacher, 4 Euler steps, CFG {cfg_scale:g}": (teacher, 4, None),
                "student, 4 steps (stage 1 only)": (out / "student_pretrain", None, None),
                "student, 4 steps": (out / "student_4step", None, None)}
    results, pictures = evaluate_rows(settings, seeds, args.n_per_category)
    write_report(out, "flashdistill demo: SD3.5-Flash on SD3-nano", results, pictures, seeds, args.n_per_category,
                 f"flashdistill demo --out {out}")
    print(f"({(time.time() - t_start) / 60:.1f} min)")
    return 0
