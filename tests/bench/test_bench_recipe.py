"""``flashdistill bench`` on the tiny pipeline: the stage-2 pass ratio with the recipe itself, and the command end to
end (quick latency rows, the JSON's speed-ups, the markdown and the chart), plus its refusals."""

from __future__ import annotations

import json

import pytest
from tinydata import make_tiny_data

from flashdistill.bench.passes import stage2_pass_ratio
from flashdistill.bench.train_cost import CONFIGS
from flashdistill.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("bench_data"))


def test_stage2_pass_ratio_with_the_recipe(data_dir):
    out = stage2_pass_ratio(CONFIGS / "sd35_flash" / "nano_dmd.yaml", [
        "teacher=tiny", f"data={data_dir / 'data'}", "init_student=null", "batch_size=4", "disc_blocks=[0,1]",
        "disc_hidden=16", f"out={data_dir / 'student'}", f"train.run_dir={data_dir / 'run'}"], iters=5)
    assert out["iterations"] == 5 and out["ratio"] > 0
    passes = out["passes"]
    # passes with weight gradients: the proxy's flow matching every iteration, the student's step once per 5
    # (one generator update every proxy_updates = 5 iterations)
    weight_grad = [p for p in passes if p["network"] == "transformer" and p["grad"] and p["weight_grad"]]
    assert sum(p["per_iteration"] for p in weight_grad) == pytest.approx(1 + 1 / 5)
    # every iteration: the disc step's no-grad proxy features on real + fake (batch 2·4·levels), stopped early
    assert any(not p["grad"] and p["batch"] == 2 * 4 * 3 and p["blocks"] == 2 for p in passes)
    # the heads: trained every iteration on real + fake, and a fixed function in the student's update (1 in 5)
    heads = {(p["weight_grad"], p["input_grad"]): p["per_iteration"] for p in passes if p["network"] == "heads"}
    assert heads == {(True, False): pytest.approx(1.0), (False, True): pytest.approx(1 / 5)}
    assert out["passes_alone_seconds"] == pytest.approx(
        sum(p["per_iteration"] * p["seconds"] for p in passes))


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    from flashdistill.models.tiny import tiny_sd3_pipeline

    root = tmp_path_factory.mktemp("bench_students")
    pipe = tiny_sd3_pipeline(seed=0)
    folders = {}
    for n, sigmas in ((4, [1.0, 0.75, 0.5, 0.25]), (2, [1.0, 0.5])):
        folder = root / f"s{n}"
        pipe.save_pretrained(folder)
        (folder / "flashdistill.json").write_text(json.dumps({
            "kind": "student", "sigmas": sigmas, "guidance_scale": 1.0, "max_sequence_length": 8, "resolution": 16}))
        folders[n] = folder
    teacher = root / "teacher"
    pipe.save_pretrained(teacher)
    (teacher / "flashdistill.json").write_text(json.dumps({"guidance_scale": 3.0, "max_sequence_length": 8}))
    return root, teacher, folders


def test_bench_quick_end_to_end(students, tmp_path, capsys):
    root, teacher, folders = students
    rc = main(["bench", "--quick", "--model", str(teacher), "--student4", str(folders[4]), "--student2",
               str(folders[2]), "--out", str(tmp_path / "res"), "--work", str(tmp_path / "work"),
               "--skip", "train,paper", "--seeds", "1", "--n-per-category", "1", "--repeats", "1"])
    assert rc == 0
    result = json.loads((tmp_path / "res" / "bench_nano.json").read_text())
    labels = [r["label"] for r in result["latency"]]
    assert labels == ["teacher 50 steps, CFG 3", "teacher 4 steps, CFG 3", "4-step student fp32",
                      "4-step student int8", "4-step student int6", "4-step student fp32, no T5",
                      "2-step student fp32"]
    rows = {r["label"]: r for r in result["latency"]}
    s = result["speedup"]  # measured interleaved, in rounds, in one process
    sec = s["seconds"]
    assert set(sec) == {labels[0], "4-step student fp32", "2-step student fp32"} and s["rounds"] == 3
    assert s["student_4_vs_teacher_50"] == pytest.approx(sec[labels[0]] / sec["4-step student fp32"])
    assert s["student_2_vs_teacher_50"] == pytest.approx(sec[labels[0]] / sec["2-step student fp32"])
    assert s["student_4_vs_teacher_50"] > 1 and s["student_2_vs_teacher_50"] > 1  # 100 NFE vs 4 or 2
    assert s["transformer_time_limit"]["student_2"] > 1
    assert rows["4-step student fp32"]["settings"][0]["breakdown"]["transformer_calls"] == 4
    assert (tmp_path / "work" / "variants" / "4step_student_int6" / "transformer" / "int6.safetensors").exists()
    q = result["quality"]["rows"]
    assert list(q) == ["4-step student fp32", "4-step student int6"]
    assert "vs_fp32" in q["4-step student int6"] and "vs_fp32" not in q["4-step student fp32"]
    md = (tmp_path / "res" / "bench_nano.md").read_text()
    assert "faster than the 50-step CFG teacher" in md and "bench_nano_latency.png" in md
    assert (tmp_path / "res" / "bench_nano_latency.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, needle", [
    (["--skip", "latency,speed"], "--skip latency,speed: unknown part(s) ['speed']"),
    (["--student4", "/nonexistent/s4"], "--student4 /nonexistent/s4: not a student pipeline folder"),
    (["--resolutions", "32,x"], "--resolutions 32,x: expected comma-separated integers"),
    (["--device", "tpu"], "--device tpu"),
])
def test_bench_refuses_bad_input_naming_it(students, tmp_path, capsys, argv, needle):
    root, teacher, folders = students
    base = ["bench", "--model", str(teacher), "--student4", str(folders[4]), "--student2", str(folders[2]),
            "--out", str(tmp_path / "res"), "--work", str(tmp_path / "work")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "res").exists()
