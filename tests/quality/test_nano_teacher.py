"""The shipped SD3-nano teacher: stock diffusers loads it offline and its samples follow their prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.shapes.nano import teacher_path

pytestmark = pytest.mark.slow


def test_stock_pipeline_loads_and_runs_with_and_without_t5():
    from diffusers import StableDiffusion3Pipeline

    folder = teacher_path()
    settings = json.loads((folder / "flashdistill.json").read_text())
    for kwargs in ({}, {"text_encoder_3": None, "tokenizer_3": None}):
        pipe = StableDiffusion3Pipeline.from_pretrained(folder, **kwargs)
        pipe.set_progress_bar_config(disable=True)
        out = pipe(["a red circle"], num_inference_steps=4, height=32, width=32, output_type="np",
                   max_sequence_length=settings["max_sequence_length"],
                   generator=torch.Generator().manual_seed(0)).images
        assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all() and out.std() > 0.02
    vae = pipe.vae.config
    assert vae.shift_factor != 0.0 and vae.scaling_factor != 1.0  # fitted latent statistics are honoured


def test_teacher_scores_far_above_chance_at_25_steps():
    from flashdistill.eval.model_eval import evaluate_model

    res = evaluate_model(teacher_path(), n_per_category=6, steps=25, splits=("train",))
    # chance (blank/noise/shuffled captions) is below 0.3 for every category, see tests/eval
    assert res["train"]["overall"] >= 0.5, res["train"]
