"""A short SD3.5-Flash stage-1 distillation of SD3-nano beats the teacher's own 4-step Euler on ShapesEval."""

from __future__ import annotations

import pytest

from flashdistill.shapes.nano import teacher_path

pytestmark = pytest.mark.slow

MARGIN = 0.10  # absolute ShapesEval points the 4-step student must gain over the teacher's 4-step Euler


def test_short_distillation_beats_teacher_4_step_euler(tmp_path):
    from flashdistill.config import from_dict
    from flashdistill.data.generate import GenerateConfig, generate
    from flashdistill.eval.model_eval import evaluate_model
    from flashdistill.recipes.sd35_flash import SD35FlashConfig, run_recipe
    from flashdistill.shapes.prompt_file import write_prompts

    prompts = write_prompts(tmp_path / "prompts.jsonl", 192, seed=11)
    generate(GenerateConfig(out=str(tmp_path / "data"), prompts=str(prompts), model="sd3-nano", num_steps=16,
                            guidance_scale=4.5, trajectory_grid=[1.0, 0.75, 0.5, 0.25, 0.0], shard_size=96,
                            batch_size=96), progress=False)
    cfg = from_dict(SD35FlashConfig, {
        "stage": "pretrain", "teacher": "sd3-nano", "data": str(tmp_path / "data"), "out": str(tmp_path / "s1"),
        "batch_size": 32, "student_optim": {"lr": 1e-4, "warmup_steps": 10},
        "train": {"run_dir": str(tmp_path / "run"), "max_steps": 80,
                  "log": {"progress_bar": False, "tensorboard": False}}})
    run_recipe(cfg)
    n = 8
    teacher4 = evaluate_model(teacher_path(), n, steps=4, splits=("train",))["train"]["overall"]
    student4 = evaluate_model(tmp_path / "s1", n, splits=("train",))["train"]["overall"]
    print(f"ShapesEval: teacher 4-step Euler {teacher4:.3f}, 4-step student {student4:.3f}")
    assert student4 >= teacher4 + MARGIN
