"""``flashdistill demo --recipe flash_diffusion``: Flash Diffusion on the shipped SD3-nano teacher, end to end.

1. render real Shapes scenes and encode them (the data ``z_0`` the recipe noises);
2. distil a LoRA student with ``configs/flash_diffusion/nano.yaml`` on a shorter schedule (4 phases);
3. judge the teacher (25 steps, CFG; ``--reference-steps``), its 4- and 2-step Euler and the LoRA student at 4, 2
   and 1 steps on the same prompts and seeds; write ``report.md``, ``comparison.png`` and ``results.json`` into the
   run folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from .assets_paths import CONFIGS as SHIPPED_CONFIGS

__all__ = ["run_flash", "CONFIGS"]

CONFIGS = SHIPPED_CONFIGS / "flash_diffusion"


def run_flash(args) -> int:
    from .config import ConfigError, load_config
    from .data.generate import GenerateConfig
    from .demo_report import evaluate_rows, reference_rows, teacher_data, write_report
    from .eval.protocol import parse_seeds
    from .pipelines.folders import guidance_of, read_run_settings
    from .recipes.flash_diffusion import FlashDiffusionConfig, run_recipe
    from .shapes.nano import teacher_path
    from .shapes.prompt_file import write_images

    if args.flash_steps < 4:
        raise ConfigError(f"--flash-steps {args.flash_steps}: give at least 4 (one per phase)")
    seeds = parse_seeds(args.seeds)
    t_start = time.time()
    teacher = Path(args.teacher) if args.teacher else teacher_path()
    scale = guidance_of(read_run_settings(teacher))
    reference = reference_rows(teacher, args.reference_steps, scale)
    out = Path(args.out or "runs/demo_flash")
    out.mkdir(parents=True, exist_ok=True)
    print(f"== teacher {teacher}\n== rendering and encoding {args.prompts} real Shapes scenes")
    write_images(out / "images", args.prompts, seed=0)
    teacher_data(GenerateConfig(out=str(out / "data"), images=str(out / "images"), model=str(teacher),
                                shard_size=256, batch_size=128))
    cfg = load_config(FlashDiffusionConfig, CONFIGS / "nano.yaml", [
        f"teacher={teacher}", f"data={out / 'data'}", f"out={out / 'student'}", f"train.run_dir={out / 'run'}",
        f"train.max_steps={args.flash_steps}", f"phase_every={-(-args.flash_steps // 4)}", "train.overwrite=true"])
    print(f"\n== flash_diffusion: {cfg.train.max_steps} iterations, phases of {cfg.phase_every} -> {cfg.out}")
    run_recipe(cfg)
    print(f"\n== evaluating on seed sets {seeds} (ShapesEval on train and held-out compositions, FD on train)")
    student = out / "student"
    settings = {**reference, f"teacher, 4 Euler steps, CFG {scale:g}": (teacher, 4, None),
                f"teacher, 2 Euler steps, CFG {scale:g}": (teacher, 2, None),
                "LoRA student, 4 steps": (student, None, None),
                "LoRA student, 2 steps": (student, 2, 1.0),
                "LoRA student, 1 step": (student, 1, 1.0)}
    results, pictures = evaluate_rows(settings, seeds, args.n_per_category)
    write_report(out, "flashdistill demo: Flash Diffusion (LoRA student) on SD3-nano", results, pictures, seeds,
                 args.n_per_category, f"flashdistill demo --recipe flash_diffusion --out {out}")
    print(f"({(time.time() - t_start) / 60:.1f} min)")
    return 0
