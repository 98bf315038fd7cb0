"""``flashdistill demo`` (what ``make demo`` runs): a short SD3.5-Flash distillation of the shipped SD3-nano teacher.

1. write Shapes prompts and let the teacher generate samples + trajectories at the 4-step grid;
2. stage 1 (trajectory guidance) and a short stage 2 (DMD with timestep sharing + adversarial heads), using the
   shipped configs ``configs/sd35_flash/nano_*.yaml`` with shorter schedules;
3. judge the teacher (25 steps, CFG; ``--reference-steps``), the teacher's own 4-step Euler and the 4-step student
   on the same prompts and seeds; write ``report.md`` and ``comparison.png`` into the run folder and print the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .assets_paths import CONFIGS as SHIPPED_CONFIGS

# the helpers both demos share (re-exported: benchmarks and tests import them from here)
from .demo_report import comparison_grid, evaluate_rows, grid_columns, reference_rows, teacher_data, write_report

__all__ = ["add_args", "run", "comparison_grid", "evaluate_rows", "grid_columns", "teacher_data", "write_report"]

CONFIGS = SHIPPED_CONFIGS / "sd35_flash"


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
    parser.add_argument("--reference-steps", type=int, default=25, help="steps of the teacher's reference row "
                        "(with CFG; the costliest row to judge); 0 leaves it out")
    parser.add_argument("--seeds", default="1,2,3,4",
                        help="evaluation seed sets: scores are their mean with a 95%% interval")


def _stage(name: str, overrides: list[str]):
    from .config import load_config
    from .recipes.sd35_flash import SD35FlashConfig, run_recipe

    cfg = load_config(SD35FlashConfig, CONFIGS / name, overrides + ["train.overwrite=true"])
    print(f"\n== {name}: {cfg.stage}, {cfg.train.max_steps} iterations -> {cfg.out}")
    run_recipe(cfg)


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
    teacher = Path(args.teacher) if args.teacher else teacher_path()
    scale = guidance_of(read_run_settings(teacher))
    reference = reference_rows(teacher, args.reference_steps, scale)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    settings = {**reference, f"teacher, 4 Euler steps, CFG {scale:g}": (teacher, 4, None),
                "student, 4 steps (stage 1 only)": (out / "student_pretrain", None, None),
                "student, 4 steps": (out / "student_4step", None, None)}
    results, pictures = evaluate_rows(settings, seeds, args.n_per_category)
    write_report(out, "flashdistill demo: SD3.5-Flash on SD3-nano", results, pictures, seeds, args.n_per_category,
                 f"flashdistill demo --out {out}")
    print(f"({(time.time() - t_start) / 60:.1f} min)")
    return 0
