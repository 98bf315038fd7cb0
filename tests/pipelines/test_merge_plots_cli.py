"""Merge interpolation, PIL plots, the CLI dispatcher, and scheduler sigmas for teacher evaluation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from flashdistill.cli import COMMANDS, main
from flashdistill.eval.plots import line_plot, read_metrics
from flashdistill.recipes.merge import interpolate_state


def test_interpolate_state_endpoints_and_ratio():
    low = {"w": torch.zeros(3), "b": torch.ones(2), "n": torch.tensor([1, 2])}
    high = {"w": torch.ones(3), "b": torch.zeros(2), "n": torch.tensor([1, 2])}
    assert torch.equal(interpolate_state(low, high, 1.0)["w"], low["w"])
    assert torch.equal(interpolate_state(low, high, 0.0)["w"], high["w"])
    mixed = interpolate_state(low, high, 0.3)
    torch.testing.assert_close(mixed["w"], torch.full((3,), 0.7))
    assert torch.equal(mixed["n"], low["n"])  # integer buffers are copied, not averaged
    with pytest.raises(ValueError, match="different parameters"):
        interpolate_state(low, {"w": high["w"]}, 0.5)
    with pytest.raises(ValueError, match="shapes"):
        interpolate_state(low, {**high, "w": torch.ones(4)}, 0.5)


def test_line_plot_from_metrics(tmp_path):
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 11)] + [{"step": 11, "other": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    steps, values = read_metrics(tmp_path / "metrics.jsonl", "loss")
    assert steps == list(range(1, 11)) and values[0] == 1.0
    path = line_plot({"loss": (steps, values)}, tmp_path / "loss.png", title="loss")
    from PIL import Image

    image = Image.open(path)
    assert image.size == (640, 360)
    assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 3  # something was drawn
    with pytest.raises(ValueError):
        line_plot({"empty": ([], [])}, tmp_path / "none.png")


def test_cli_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text


def test_cli_reports_config_errors_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: sd35_flash\nstage: dmd\nnum_step: 4\n")
    proc = subprocess.run([sys.executable, "-m", "flashdistill.cli", "distill", "--config", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "num_step" in proc.stderr and "num_steps" in proc.stderr  # names the key and the nearest valid one
    assert "Traceback" not in proc.stderr


def test_scheduler_sigmas_match_diffusers(tiny_pipe):
    from flashdistill.pipelines.generate import scheduler_sigmas

    sigmas = scheduler_sigmas(tiny_pipe, 4)
    sched = tiny_pipe.scheduler.from_config(tiny_pipe.scheduler.config)
    sched.set_timesteps(4)
    assert sigmas == [float(s) for s in sched.sigmas] and sigmas[-1] == 0.0 and len(sigmas) == 5


def test_cli_drops_only_the_two_empty_library_notes():
    import logging

    from flashdistill.cli import _quiet_torchvision_fallback

    _quiet_torchvision_fallback()
    _quiet_torchvision_fallback()  # idempotent
    logger = logging.getLogger("transformers.utils.import_utils")
    assert len(logger.filters) == 1

    def record(msg):
        return logging.LogRecord(logger.name, logging.WARNING, __file__, 1, msg, None, None)

    assert not logger.filter(record("`CLIPImageProcessor` requires torchvision (not installed); falling back"))
    assert logger.filter(record("something else worth seeing"))
    # diffusers' dtype-cast note is dropped only when its list of fp32-only modules is empty
    from flashdistill.cli import _no_empty_fp32_list_note

    diffusers_log = logging.getLogger("diffusers.models.modeling_utils")
    assert diffusers_log.filters.count(_no_empty_fp32_list_note) == 1  # (diffusers adds a rank-0 filter of its own)
    note = "There are modules in SD3Transformer2DModel that should be kept in float32: {}. Casting directly"
    assert not diffusers_log.filter(record(note.format("[]")))
    assert diffusers_log.filter(record(note.format("['norm_out']")))


@pytest.mark.parametrize("flags, named", [(["--steps", "0"], "--steps 0"), (["--steps", "-2"], "--steps -2"),
                                          (["--guidance", "-1"], "--guidance -1"),
                                          (["--num-images", "0"], "--num-images 0")])
def test_sample_refuses_out_of_range_flags(tmp_path, capsys, flags, named):
    from flashdistill.cli import main

    assert main(["sample", "--prompt", "a red circle", "--out", str(tmp_path / "s"), *flags]) == 2
    assert named in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_eval_images_with_a_caption_outside_the_world_names_file_and_line(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from flashdistill.cli import main

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "a.png", "prompt": "a red circle"}) + "\n"
                                             + json.dumps({"file": "b.png", "prompt": "a photo of a cat"}) + "\n")
    assert main(["eval", "--images", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "captions.jsonl:2" in err and "a photo of a cat" in err and "Traceback" not in err
