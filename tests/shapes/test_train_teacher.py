"""``flashdistill train-teacher`` end to end at toy size: VAE, DiT, export; stock diffusers loads the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    args = ["train-teacher", "pool_size=64", f"out={root / 'out'}",
            f"vae.train.run_dir={root / 'vae'}", "vae.train.max_steps=2", "vae.batch_size=8",
            f"dit.train.run_dir={root / 'dit'}", "dit.train.max_steps=3", "dit.batch_size=8",
            "dit.train.checkpoint.every=2", "dit.train.log.samples_every=0", "dit.guidance_scale=2.5"]
    assert main(args) == 0
    return root, args


def test_export_is_a_stock_pipeline_with_fitted_latents_and_settings(trained):
    from diffusers import StableDiffusion3Pipeline

    root, _ = trained
    out = root / "out"
    settings = json.loads((out / "flashdistill.json").read_text())
    assert settings["guidance_scale"] == 2.5 and settings["kind"] == "teacher"
    pipe = StableDiffusion3Pipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae.config.shift_factor != 0.0 and pipe.vae.config.scaling_factor != 1.0
    assert pipe.scheduler.config.shift == 2.0  # the training shift (config default), not diffusers' 3.0
    img = pipe(["a red circle"], num_inference_steps=2, height=32, width=32, output_type="np",
               max_sequence_length=settings["max_sequence_length"], guidance_scale=settings["guidance_scale"],
               generator=torch.Generator().manual_seed(0)).images
    assert img.shape == (1, 32, 32, 3) and np.isfinite(img).all()


def test_dit_resumes_and_export_from_checkpoint_matches(trained, tmp_path):
    from safetensors.torch import load_file

    root, args = trained
    metrics = [json.loads(line) for line in (root / "dit" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "fm" in m][-1] == 3
    # one more step, resumed from the latest checkpoint (step 3: the final one)
    more = [a for a in args if not a.startswith("dit.train.max_steps")] + ["dit.train.max_steps=4"]
    assert main(more + ["stages=[dit]", "--resume"]) == 0
    metrics = [json.loads(line) for line in (root / "dit" / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in metrics if "fm" in m]
    assert steps[-1] == 4 and steps.count(3) == 1  # continued, not restarted
    ckpt = sorted((root / "dit" / "checkpoints").iterdir())[-1]
    out = tmp_path / "exported"
    assert main(["train-teacher", "stages=[export]", f"export_from={ckpt}", f"out={out}",
                 f"vae.train.run_dir={root / 'vae'}"]) == 0
    ema = load_file(str(ckpt / "ema" / "denoiser_ema.safetensors"))
    exported = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
    for name, value in exported.items():
        assert torch.equal(value, ema[f"transformer.{name}"]), name


def test_dit_continues_from_a_teacher_folder_without_any_run(trained, tmp_path, capsys):
    """dit.init_from starts from a trained folder's weights (no VAE run needed): one small step away from them,
    where a fresh start is far off; a folder of another architecture is refused, naming it."""
    from safetensors.torch import load_file

    root, _ = trained
    base = ["train-teacher", "stages=[dit]", "pool_size=64", f"vae.train.run_dir={tmp_path / 'no_vae'}",
            "dit.train.max_steps=1", "dit.batch_size=8", "dit.train.log.samples_every=0"]

    def transformer(folder):
        return load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))

    assert main(base + [f"dit.init_from={root / 'out'}", f"dit.train.run_dir={tmp_path / 'dit'}",
                        f"out={tmp_path / 'cont'}"]) == 0
    start, cont = transformer(root / "out"), transformer(tmp_path / "cont")
    assert max((cont[k] - start[k]).abs().max().item() for k in start) < 1e-2
    vae_a = load_file(str(root / "out" / "vae" / "diffusion_pytorch_model.safetensors"))
    vae_b = load_file(str(tmp_path / "cont" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(vae_a[k], vae_b[k]) for k in vae_a)
    # exporting one of its checkpoints needs no VAE run either: the VAE comes from init_from
    ckpt = sorted((tmp_path / "dit" / "checkpoints").iterdir())[-1]
    assert main(["train-teacher", "stages=[export]", f"export_from={ckpt}", f"out={tmp_path / 'exp'}",
                 f"dit.init_from={root / 'out'}", f"vae.train.run_dir={tmp_path / 'no_vae'}"]) == 0
    exported = transformer(tmp_path / "exp")
    assert all(torch.equal(exported[k], cont[k]) for k in cont)
    # neither a VAE run nor a folder to start from: a clear error, exit status 2
    assert main(base + [f"dit.train.run_dir={tmp_path / 'dit2'}", f"out={tmp_path / 'x'}"]) == 2
    assert "dit.init_from" in capsys.readouterr().err
    from flashdistill.models.tiny import tiny_sd3_pipeline

    other = tmp_path / "tiny"
    tiny_sd3_pipeline(seed=0).save_pretrained(other)
    with pytest.raises(ValueError, match="init_from=.*tiny.*transformer"):
        main(base + [f"dit.init_from={other}", f"dit.train.run_dir={tmp_path / 'dit3'}", f"out={tmp_path / 'y'}"])
