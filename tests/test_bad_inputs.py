"""Every subcommand against every class of bad input that applies to it: exit code 2, a one-line message naming the
offending file, key or value, no traceback, and no existing output changed or deleted.

docs/reliability.md lists these cases (``python tests/test_bad_inputs.py`` prints the table it holds).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from flashdistill.cli import main


@dataclass(frozen=True)
class Case:
    name: str  # what a user did wrong
    argv: tuple[str, ...]  # "{t}" stands for the test's folder
    names: tuple[str, ...]  # the message must contain each of these ("{t}" expanded)


def _world(t: Path) -> None:
    """Files of every wrong kind, and an output folder whose contents must survive every refused command."""
    (t / "missing").mkdir()
    (t / "empty.yaml").write_text("")
    (t / "list.yaml").write_text("- a\n- b\n")
    (t / "binary.yaml").write_bytes(b"\x00\xff\xfe garbage \x00")
    (t / "unknown_key.yaml").write_text("recipe: sd35_flash\nstage: pretrain\nbatchsize: 4\n")
    (t / "bad_number.yaml").write_text("recipe: sd35_flash\nstage: pretrain\nbatch_size: -3\n")
    (t / "bad_type.yaml").write_text("recipe: sd35_flash\nstage: pretrain\nbatch_size: abc\n")
    (t / "wrong_recipe.yaml").write_text("recipe: sd99_turbo\n")
    (t / "flash_unused.yaml").write_text("recipe: flash_diffusion\nstudent: full\nlora_rank: 8\ndata: x\n")
    (t / "gen_unknown.yaml").write_text("recipe: generate_data\nout: x\nprompts: p.txt\nstepz: 4\n")
    (t / "teacher_bad.yaml").write_text("recipe: sd3_nano_teacher\nvae: {batch_size: 0}\n")
    (t / "notapipe").mkdir()
    (t / "notapipe" / "readme.txt").write_text("hello")
    (t / "sd15").mkdir()
    (t / "sd15" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (t / "badjson").mkdir()
    (t / "badjson" / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    (t / "badjson" / "flashdistill.json").write_text("{not json")
    (t / "images").mkdir()
    (t / "images" / "captions.jsonl").write_text('{"file": "a.png", "prompt": "a photo of a cat"}\n')
    from PIL import Image

    Image.new("RGB", (32, 32)).save(t / "images" / "a.png")
    (t / "badimages").mkdir()
    (t / "badimages" / "captions.jsonl").write_text('{"file": "gone.png", "prompt": "a red circle"}\n')
    (t / "prompts.txt").write_text("a red circle\n")
    (t / "empty_prompts.txt").write_text("")
    (t / "out").mkdir()
    (t / "out" / "keep.txt").write_text("precious")


CASES = [
    # --- missing / unreadable / empty / wrong-type files
    Case("distill: config file missing", ("distill", "--config", "{t}/nope.yaml"), ("{t}/nope.yaml",)),
    Case("distill: empty config", ("distill", "--config", "{t}/empty.yaml"), ("{t}/empty.yaml",)),
    Case("distill: config is a list", ("distill", "--config", "{t}/list.yaml"), ("{t}/list.yaml",)),
    Case("distill: binary garbage config", ("distill", "--config", "{t}/binary.yaml"), ("{t}/binary.yaml",)),
    Case("generate-data: config missing", ("generate-data", "--config", "{t}/nope.yaml"), ("nope.yaml",)),
    Case("generate-data: prompt file missing", ("generate-data", "--prompts", "{t}/nope.txt", "--out", "{t}/out/d",
                                                "--model", "tiny"), ("{t}/nope.txt",)),
    Case("generate-data: empty prompt file", ("generate-data", "--prompts", "{t}/empty_prompts.txt", "--out",
                                              "{t}/out/d", "--model", "tiny"), ("empty_prompts.txt",)),
    Case("generate-data: image listed but missing", ("generate-data", "--images", "{t}/badimages", "--out",
                                                     "{t}/out/d", "--model", "tiny"), ("gone.png",)),
    Case("train-teacher: config missing", ("train-teacher", "--config", "{t}/nope.yaml"), ("nope.yaml",)),
    Case("merge-lora: LoRA folder missing", ("merge-lora", "--lora", "{t}/nope", "--out", "{t}/out/m"), ("{t}/nope",)),
    Case("eval: folder's flashdistill.json is not JSON", ("eval", "--model", "{t}/badjson"),
         ("{t}/badjson/flashdistill.json",)),
    # --- out-of-range numbers and wrong types
    Case("distill: negative batch size", ("distill", "--config", "{t}/bad_number.yaml"), ("batch_size", "-3")),
    Case("distill: batch size not a number", ("distill", "--config", "{t}/bad_type.yaml"), ("batch_size", "abc")),
    Case("distill: override out of range", ("distill", "--config", "{t}/bad_number.yaml", "batch_size=0"),
         ("batch_size",)),
    Case("sample: zero steps", ("sample", "--prompt", "a red circle", "--steps", "0"), ("--steps", "0")),
    Case("sample: negative guidance", ("sample", "--prompt", "a red circle", "--guidance", "-1"), ("--guidance",)),
    Case("sample: zero images", ("sample", "--prompt", "a red circle", "--num-images", "0"), ("--num-images",)),
    Case("shapes-prompts: zero prompts", ("shapes-prompts", "--out", "{t}/out/p.jsonl", "--n", "0"), ("--n", "0")),
    Case("generate-data: zero shard size", ("generate-data", "--prompts", "{t}/prompts.txt", "--out", "{t}/out/d",
                                            "--model", "tiny", "--shard-size", "0"), ("shard_size",)),
    Case("train-teacher: zero batch size", ("train-teacher", "--config", "{t}/teacher_bad.yaml"),
         ("batch_size", "0")),
    Case("train-teacher: init_from not a teacher folder",
         ("train-teacher", "--config", "configs/unet_nano_teacher.yaml", "init_from={t}/missing",
          "out={t}/out/teacher", "train.run_dir={t}/out/run"), ("init_from", "{t}/missing")),
    Case("train-teacher: train_text_encoder on a UNet",
         ("train-teacher", "--config", "configs/unet_nano_teacher.yaml", "train_text_encoder=true",
          "out={t}/out/teacher", "train.run_dir={t}/out/run"), ("train_text_encoder", "unet")),
    Case("train-teacher: PixArt size keys on a UNet",
         ("train-teacher", "--config", "configs/unet_nano_teacher.yaml", "pixart_heads=8",
          "out={t}/out/teacher", "train.run_dir={t}/out/run"), ("pixart_heads", "unet")),
    Case("demo: flash demo with too few iterations", ("demo", "--recipe", "flash_diffusion", "--flash-steps", "2",
                                                      "--out", "{t}/out/demo"), ("--flash-steps", "2")),
    Case("demo: negative reference steps", ("demo", "--reference-steps", "-1", "--out", "{t}/out/demo"),
         ("--reference-steps", "-1")),
    Case("eval: seed sets not integers", ("eval", "--seeds", "one,two"), ("one",)),
    # --- unknown keys
    Case("distill: unknown key", ("distill", "--config", "{t}/unknown_key.yaml"), ("batchsize", "batch_size")),
    Case("distill: unknown override", ("distill", "--config", "{t}/bad_number.yaml", "bach_size=4"), ("bach_size",)),
    Case("distill: unknown recipe", ("distill", "--config", "{t}/wrong_recipe.yaml"), ("sd99_turbo",)),
    Case("distill: key unused by these settings", ("distill", "--config", "{t}/flash_unused.yaml"), ("lora_rank",)),
    Case("generate-data: sampling settings with images", ("generate-data", "--images", "{t}/images", "--out",
                                                          "{t}/out/d", "num_steps=8", "guidance_scale=3"),
         ("'num_steps'", "'guidance_scale'", "'images'")),
    Case("generate-data: unknown key", ("generate-data", "--config", "{t}/gen_unknown.yaml"), ("stepz",)),
    # --- prompts outside the world
    Case("eval: caption outside the Shapes grammar", ("eval", "--images", "{t}/images"),
         ("{t}/images/captions.jsonl", "a photo of a cat")),
    # --- folders of the wrong kind
    Case("sample: not a pipeline folder", ("sample", "--model", "{t}/notapipe", "--prompt", "x"), ("{t}/notapipe",)),
    Case("sample: a UNet folder without its weights", ("sample", "--model", "{t}/sd15", "--prompt", "x"),
         ("{t}/sd15", "StableDiffusionPipeline")),
    Case("eval: not a pipeline folder", ("eval", "--model", "{t}/notapipe"), ("{t}/notapipe",)),
    Case("merge-lora: a full pipeline, not a LoRA", ("merge-lora", "--lora", "{t}/sd15", "--out", "{t}/out/m"),
         ("{t}/sd15",)),
    Case("merge-lora: output folder not empty", ("merge-lora", "--lora", "{t}/sd15", "--out", "{t}/out"),
         ("{t}/sd15",)),
    Case("merge: branch folder not a student", ("merge", "--low", "{t}/notapipe", "--high", "{t}/notapipe",
                                                "--out", "{t}/out/merged"), ("{t}/notapipe",)),
    Case("generate-data: model folder not a pipeline", ("generate-data", "--prompts", "{t}/prompts.txt", "--out",
                                                        "{t}/out/d", "--model", "{t}/notapipe"), ("{t}/notapipe",)),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    t = tmp_path_factory.mktemp("bad")
    _world(t)
    return t


def _own_output(err: str) -> str:
    """stderr without Python's "--- Logging error ---" reports: a library logger created under an earlier test's
    captured stderr writes to that closed stream (a test-harness artefact; one process has one stderr)."""
    return re.sub(r"--- Logging error ---\n.*?\nArguments: [^\n]*\n?", "", err, flags=re.S)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_cleanly(case, world, capsys):
    before = _tree(world)
    argv = [a.replace("{t}", str(world)) for a in case.argv]
    code = main(argv)
    err = _own_output(capsys.readouterr().err).strip()
    assert code == 2, f"exit code {code} for {argv}; stderr: {err[-500:]}"
    assert "Traceback" not in err
    message = err.splitlines()[-1] if err else ""
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    for name in case.names:
        assert name.replace("{t}", str(world)) in message, f"{name!r} not named in: {message}"
    assert _tree(world) == before, "a refused command changed or deleted existing files"


def test_a_run_folder_in_use_by_another_process_is_refused(tiny_pipe, capsys, tmp_path):
    """Two runs on one folder at once: the second (here a real `distill`) is refused, naming the owner's pid."""
    from flashdistill.data.generate import GenerateConfig, generate

    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    generate(GenerateConfig(out=str(tmp_path / "data"), prompts=str(tmp_path / "p.txt"), model="tiny", num_steps=2,
                            resolution=16, max_sequence_length=8, shard_size=2, batch_size=2),
             pipe=tiny_pipe, progress=False)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    cfg = tmp_path / "flash.yaml"
    cfg.write_text(json.dumps({"recipe": "flash_diffusion", "teacher": "tiny", "data": str(tmp_path / "data"),
                               "disc_blocks": [0, 1], "train": {"run_dir": str(run_dir), "overwrite": True}}))
    hold = ("import sys, time; from flashdistill.fsio import FolderLock; FolderLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(120)")
    owner = subprocess.Popen([sys.executable, "-c", hold, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "locked"
        code = main(["distill", "--config", str(cfg)])
        err = _own_output(capsys.readouterr().err)
        assert code == 2 and f"pid {owner.pid}" in err and str(run_dir) in err and "Traceback" not in err
        assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1}\n'  # overwrite=true deleted nothing
    finally:
        owner.kill()
        owner.wait(timeout=30)


def table() -> str:
    """The markdown table of docs/reliability.md."""
    rows = ["| bad input | command | must name |", "|---|---|---|"]
    for c in CASES:
        rows.append(f"| {c.name} | `flashdistill {' '.join(c.argv).replace('{t}/', '')}` | "
                    f"{', '.join(n.replace('{t}/', '') for n in c.names)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
