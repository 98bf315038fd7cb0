"""The shipped SD3-nano teacher: stock diffusers loads it offline and its samples follow their prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.shapes.nano import teacher_path

pytestmark = pytest.mark.slow

MARGIN = 0.2  # ShapesEval with the true prompts minus with shuffled prompts, at least


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


def _colour_hits(images, specs) -> float:
    """Fraction of prompts naming colours whose every named colour is detected (shape ignored)."""
    from flashdistill.eval.detector import Detector

    hits = []
    for spec, dets in zip(specs, Detector()(images)):
        want = {o.color for o in spec.objects if o.color}
        if want:
            hits.append(want <= {d.color for d in dets})
    return float(np.mean(hits))


def test_teacher_learned_the_world():
    """Against the same pipeline with an untrained transformer: far closer to real Shapes, and right colours;
    and its images follow their own prompts: ShapesEval well above what the same images score against shuffled
    prompts (chance for these scenes, ~0.1)."""
    from flashdistill.eval.fd import FDJudge, reference_images
    from flashdistill.pipelines.generate import generate_images, load_setup
    from flashdistill.pipelines.sample import load_pipeline
    from flashdistill.shapes import eval_prompts
    from flashdistill.shapes.nano import build_nano_pipeline

    prompts = eval_prompts(8, seed=0)
    specs = [s for _, s in prompts]
    ref, fd = reference_images(256, seed=1234), FDJudge()
    trained = load_setup(teacher_path(), steps=25)  # the teacher's own CFG scale
    images, _ = generate_images(trained, [p for p, _ in prompts])
    pipe = load_pipeline(teacher_path())
    pipe.transformer = build_nano_pipeline(seed=0).transformer
    untrained, _ = generate_images(load_setup(teacher_path(), steps=25, pipe=pipe),
                                   [p for p, _ in prompts])
    fd_t, fd_u = fd.score(images, ref)["fd"], fd.score(untrained, ref)["fd"]
    hit_t, hit_u = _colour_hits(images, specs), _colour_hits(untrained, specs)
    print(f"FD trained {fd_t:.1f} vs untrained {fd_u:.1f}; colour hits {hit_t:.2f} vs {hit_u:.2f}")
    assert fd_t <= 0.25 * fd_u
    assert hit_t >= 0.6 and hit_t >= hit_u + 0.3
    from flashdistill.eval.shapes_eval import ShapesEval

    judge = ShapesEval()
    own = judge.score(images, specs)["overall"]
    perm = np.random.default_rng(0).permutation(len(specs))
    shuffled = judge.score(images, [specs[i] for i in perm])["overall"]
    print(f"ShapesEval {own:.3f} with its prompts vs {shuffled:.3f} with shuffled prompts")
    assert own >= shuffled + MARGIN


def test_noised_start_keeps_a_barely_noised_picture_and_generation_is_the_t1_case():
    """From real images noised to t0 = 0.02 the teacher's ODE returns them (ShapesEval as the VAE round trip);
    t0 = 1 is plain generation, which cannot beat it. A wrong noising direction or time scale breaks the first."""
    from flashdistill.eval.noised_start import noised_start_scores
    from flashdistill.pipelines.generate import load_setup

    setup = load_setup(teacher_path(), guidance=2.0)
    scores = noised_start_scores(setup, starts=(0.02, 1.0), n_per_category=4, steps=4)
    print(scores)
    assert scores[0.02] >= 0.85 and scores[1.0] <= scores[0.02]
    with pytest.raises(ValueError, match="start 0"):
        noised_start_scores(setup, starts=(0.0,))
