"""``flashdistill demo`` (what ``make demo`` runs) end to end at toy size: report, picture and results written."""

from __future__ import annotations

import json

import pytest

from flashdistill.cli import main
from flashdistill.pipelines.sample import read_run_settings
from flashdistill.shapes.nano import teacher_path

pytestmark = pytest.mark.slow


def test_demo_writes_report_grid_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--prompts", "32", "--pretrain-steps", "2", "--dmd-steps", "2",
                 "--n-per-category", "1", "--seeds", "1,2", "--reference-steps", "10"]) == 0
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert (out / "comparison.png").stat().st_size > 0
    assert len(results) == 4 and all("train" in r and "heldout" in r for r in results.values())
    g = read_run_settings(teacher_path())["guidance_scale"]  # the teacher folder's CFG scale, not a constant
    assert [k for k in results if k.startswith("teacher")] == [f"teacher, 10 steps, CFG {g:g}",
                                                                f"teacher, 4 Euler steps, CFG {g:g}"]
    for label in results:
        assert f"| {label} |" in report
    assert "\n1. " in report and "\n6. " in report  # the grid's column prompts are listed (1 per category here)
    assert "report:" in capsys.readouterr().out


def test_flash_diffusion_demo_writes_report_grid_and_scores(tmp_path, capsys):
    out = tmp_path / "flash"
    assert main(["demo", "--recipe", "flash_diffusion", "--out", str(out), "--prompts", "32", "--flash-steps", "4",
                 "--n-per-category", "1", "--seeds", "1", "--reference-steps", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [k for k in results if k.startswith("teacher")] == [k for k in results if "Euler" in k]  # no reference
    assert [k for k in results if k.startswith("LoRA")] == ["LoRA student, 4 steps", "LoRA student, 2 steps",
                                                            "LoRA student, 1 step"]
    # the student's own grid at 2 steps: uniform, shifted by the teacher's shift as nano.yaml trains it
    shift = json.loads((out / "student" / "flashdistill.json").read_text())["grid_shift"]
    assert results["LoRA student, 2 steps"]["timesteps"] == pytest.approx([1.0, shift * 0.5 / (1 + (shift - 1) * 0.5),
                                                                            0.0])
    assert (out / "comparison.png").stat().st_size > 0
    assert (out / "student" / "pytorch_lora_weights.safetensors").is_file()
    assert "Flash Diffusion" in (out / "report.md").read_text() and "report:" in capsys.readouterr().out


def test_grid_columns_cover_every_category():
    from flashdistill.demo import grid_columns
    from flashdistill.shapes import CATEGORIES

    n = 16
    cols = grid_columns(len(CATEGORIES) * n, 10)
    assert len(cols) == 10 and cols == sorted(cols) and cols[-1] == len(CATEGORIES) * n - 1
    assert {i // n for i in cols} == set(range(len(CATEGORIES)))
    assert grid_columns(3, 8) == [0, 1, 2]


def test_demo_regenerates_data_left_by_another_teacher(tmp_path, capsys):
    from flashdistill.data.generate import GenerateConfig
    from flashdistill.demo import teacher_data

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["a red circle", "two blue squares"]))
    cfg = GenerateConfig(out=str(tmp_path / "data"), prompts=str(prompts), model="tiny", num_steps=2,
                         max_sequence_length=8, trajectory_grid=[1.0, 0.0])
    settings = tmp_path / "data" / "settings.json"
    teacher_data(cfg)
    real = json.loads(settings.read_text())
    settings.write_text(json.dumps({**real, "model_weights": "0" * 16}))  # as if written by an earlier teacher
    assert (teacher_data(cfg) / "index.json").is_file()
    assert json.loads(settings.read_text()) == real and "regenerating it" in capsys.readouterr().out

