"""Short SD3.5-Flash distillations of SD3-nano beat the teacher's own few-step Euler.

- 4 steps: the demo's run (stage 1 150 + stage 2 150 iterations, ``flashdistill demo``) must beat the teacher's
  4-step Euler on ShapesEval by MARGIN_4, judged as the demo judges: the mean over evaluation seed sets 1-4 (16
  prompts per category each, 384 prompts; one set of 96 moves by ~0.05 between draws). Measured on the shipped
  teacher (0.766 [0.732, 0.799] at 25 steps on these sets): student 0.685 [0.646, 0.724], Euler 0.622 [0.581,
  0.664], stage 1 alone 0.648 (``pytest -s``, 596 s for both tests here): a stage 2 that does nothing is close to
  failing this. The demo runs with ``--reference-steps 0``: the 25-step teacher row, unread here, cost ~200 s.
- 2 steps, where the teacher's own Euler collapses: an 80-iteration stage-1 student must beat it on both ShapesEval
  (by MARGIN) and FD against real Shapes images, on seed sets 1-4 at 8 prompts per category (measured: ShapesEval
  0.448 vs 0.010, FD 119 vs 249).
"""

from __future__ import annotations

import pytest

from flashdistill.shapes.nano import teacher_path

pytestmark = pytest.mark.slow

RATIO = 0.8  # the 2-step student's FD must be at most this fraction of the teacher's 2-step Euler FD
MARGIN = 0.1  # and its ShapesEval at least this much above the teacher's 2-step Euler
MARGIN_4 = 0.05  # the demo's 4-step student's ShapesEval above the teacher's 4-step Euler, at least (mean of SEEDS)
SEEDS = (1, 2, 3, 4)  # evaluation seed sets of the 4-step comparison (the demo's defaults)


def test_demo_4_step_student_beats_teacher_4_step_euler(tmp_path):
    import json

    import torch

    from flashdistill.cli import main

    demo = tmp_path / "demo"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # real-size models: 1.6x faster than on 1 thread (4.6 vs 7.3 min, same scores)
    try:
        # the 25-step reference row is the costliest to judge and this test does not read it
        assert main(["demo", "--out", str(demo), "--n-per-category", "16", "--reference-steps", "0",
                     "--seeds", ",".join(map(str, SEEDS))]) == 0
    finally:
        torch.set_num_threads(threads)
    table = json.loads((demo / "results.json").read_text())
    euler = table[next(k for k in table if k.startswith("teacher, 4 Euler"))]["train"]
    student = table["student, 4 steps"]["train"]
    assert table["student, 4 steps"]["seeds"] == list(SEEDS) and student["n_prompts"] == 96 * len(SEEDS)
    print(f"ShapesEval over seed sets {SEEDS}: teacher 4-step Euler {euler['shapes_eval']:.3f} {euler['ci95']}, "
          f"4-step student {student['shapes_eval']:.3f} {student['ci95']}")
    assert student["shapes_eval"] >= euler["shapes_eval"] + MARGIN_4


def test_short_distillation_beats_teacher_2_step_euler(tmp_path):
    from flashdistill.config import from_dict
    from flashdistill.data.generate import GenerateConfig, generate
    from flashdistill.eval.model_eval import evaluate_seeds
    from flashdistill.recipes.sd35_flash import SD35FlashConfig, run_recipe
    from flashdistill.shapes.prompt_file import write_prompts

    prompts = write_prompts(tmp_path / "prompts.jsonl", 192, seed=11)
    generate(GenerateConfig(out=str(tmp_path / "data"), prompts=str(prompts), model="sd3-nano", num_steps=16,
                            guidance_scale=None, trajectory_grid=[1.0, 0.5, 0.0], shard_size=96,
                            batch_size=96), progress=False)
    cfg = from_dict(SD35FlashConfig, {
        "stage": "pretrain", "teacher": "sd3-nano", "data": str(tmp_path / "data"), "out": str(tmp_path / "s1"),
        "num_steps": 2, "batch_size": 32, "student_optim": {"lr": 1e-4, "warmup_steps": 10},
        "train": {"run_dir": str(tmp_path / "run"), "max_steps": 80,
                  "log": {"progress_bar": False, "tensorboard": False}}})
    run_recipe(cfg)
    n = 8
    teacher2 = evaluate_seeds(teacher_path(), SEEDS, n, steps=2, splits=("train",))["train"]
    student2 = evaluate_seeds(tmp_path / "s1", SEEDS, n, splits=("train",))["train"]
    print(f"seed sets {SEEDS}: FD teacher 2-step Euler {teacher2['fd']:.1f}, 2-step student {student2['fd']:.1f}; "
          f"ShapesEval {teacher2['shapes_eval']:.3f} {teacher2['ci95']} vs {student2['shapes_eval']:.3f} "
          f"{student2['ci95']}")
    assert student2["fd"] <= RATIO * teacher2["fd"]
    assert student2["shapes_eval"] >= teacher2["shapes_eval"] + MARGIN
