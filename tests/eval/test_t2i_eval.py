"""Judging any text-to-image model offline: FID (torchmetrics) on a tiny TorchScript feature network, CLIP score with
a tiny CLIP trained here to match Shapes captions, prompt files, the GenEval layout, resuming and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashdistill.cli import main
from flashdistill.config import ConfigError
from flashdistill.errors import DataError
from flashdistill.eval.t2i.prompts import read_eval_prompts

pytest.importorskip("torchmetrics")  # in the project's `metrics` extra, which `make test` installs


class TinyInception(torch.nn.Module):
    """An Inception-style stand-in: uint8 (N, 3, H, W) -> (N, 16) pooled conv features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(),
                                        torch.nn.Conv2d(16, 16, 3, stride=2), torch.nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.float() / 127.5 - 1).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def feature_net(tmp_path_factory):
    path = tmp_path_factory.mktemp("fid") / "features.pt2"
    example = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    program = torch.export.export(TinyInception().eval(), (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096),
                                                   2: torch.export.Dim("h", min=16, max=1024),
                                                   3: torch.export.Dim("w", min=16, max=1024)},))
    torch.export.save(program, str(path))
    return path


def _shapes(n, seed=0, noise=0.0):
    from flashdistill.shapes.world import make_dataset

    images = np.stack([d[0] for d in make_dataset(n, seed=seed, split="train")]).astype(np.float64)
    if noise:
        images = images + np.random.default_rng(seed).normal(0, noise, images.shape)
    return images.clip(0, 255).astype(np.uint8), [d[1] for d in make_dataset(n, seed=seed, split="train")]


def _write_folder(folder, images):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:04d}.png")
    return folder


def test_fid_is_zero_on_itself_grows_with_noise_and_equals_a_reference_computation(feature_net, tmp_path):
    from flashdistill.eval.fd import frechet_distance
    from flashdistill.eval.t2i.fid import FID

    real, _ = _shapes(96, seed=0)
    ref = _write_folder(tmp_path / "ref", real)
    scores = {}
    for noise in (0.0, 20.0, 60.0):
        fid = FID(ref, features=str(feature_net))
        fake = _shapes(96, seed=0, noise=noise)[0]
        fid.add(fake, [""] * len(fake))
        scores[noise] = fid.result()["fid"]
    assert abs(scores[0.0]) < 1e-2 and scores[0.0] < scores[20.0] < scores[60.0]
    other, _ = _shapes(96, seed=1)
    fid = FID(ref, features=str(feature_net))
    fid.add(other, [""] * len(other))
    net = TinyInception().eval()
    with torch.no_grad():
        fa, fb = (net(torch.from_numpy(x).permute(0, 3, 1, 2)).double().numpy() for x in (real, other))
    assert fid.result()["fid"] == pytest.approx(frechet_distance(fa, fb), rel=1e-3, abs=1e-3)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP trained contrastively for a few seconds on single Shapes objects (colour + shape captions)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from flashdistill.models.tokenizers import build_clip_tokenizer
    from flashdistill.shapes.nano import shapes_vocabulary

    tok = build_clip_tokenizer(shapes_vocabulary(), 16)
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=16,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                      bos_token_id=tok.bos_token_id),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=16)
    model = CLIPModel(cfg)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tok)
    images, prompts = _shapes(512, seed=3)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for step in range(120):
        idx = np.random.default_rng(step).choice(len(images), 64, replace=False)
        batch = processor(text=[prompts[i] for i in idx], images=list(images[idx]), return_tensors="pt",
                          padding=True)
        loss = model(**batch, return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = tmp_path_factory.mktemp("clip") / "clip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_clip_score_ranks_matching_captions_above_shuffled_ones(tiny_clip):
    from flashdistill.eval.t2i.clip_score import CLIPScore

    images, prompts = _shapes(128, seed=9)  # unseen scenes
    judge = CLIPScore(tiny_clip)
    matched = judge.scores(images, prompts)
    shuffled = judge.scores(images, prompts[1:] + prompts[:1])
    assert matched.shape == (128,) and (matched >= 0).all() and (matched <= 100).all()
    assert matched.mean() > shuffled.mean() + 1.0
    judge.add(images, prompts)
    r = judge.result()
    assert r["clip_score_ci95"][0] < r["clip_score"] < r["clip_score_ci95"][1]
    from flashdistill.eval.t2i.clip_score import PickScore

    pick = PickScore(tiny_clip)  # the same CLIP standing in for PickScore_v1: logit_scale · cos, no clamp
    scale = float(pick.model.logit_scale.exp())
    np.testing.assert_allclose(pick.scores(images[:8], prompts[:8]),
                               scale * pick.cosines(images[:8], prompts[:8]).numpy(), rtol=1e-6)
    assert pick.scores(images, prompts).mean() > pick.scores(images, prompts[1:] + prompts[:1]).mean()


def test_prompt_files_txt_coco_geneval(tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\n\n two blue squares \n")
    assert [p.text for p in read_eval_prompts(tmp_path / "p.txt")] == ["a red circle", "two blue squares"]
    (tmp_path / "coco.json").write_text(json.dumps({"annotations": [{"image_id": 1, "caption": "A cat. "},
                                                                    {"image_id": 2, "caption": "A dog"}]}))
    assert [p.text for p in read_eval_prompts(tmp_path / "coco.json", limit=1)] == ["A cat."]
    line = {"tag": "counting", "include": [{"class": "circle", "count": 2}], "prompt": "two red circles"}
    (tmp_path / "geneval.jsonl").write_text(json.dumps(line) + "\n")
    assert read_eval_prompts(tmp_path / "geneval.jsonl")[0] == line
    (tmp_path / "bad.jsonl").write_text(json.dumps(line) + "\n{\"tag\": 1}\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_eval_prompts(tmp_path / "bad.jsonl")


def test_eval_any_model_geneval_layout_resumes_and_refuses_changes(feature_net, tiny_clip, tmp_path, capsys):
    real, _ = _shapes(32, seed=0)
    ref = _write_folder(tmp_path / "ref", real)
    lines = [{"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a red circle"},
             {"tag": "counting", "include": [{"class": "square", "count": 2}], "prompt": "two blue squares"},
             {"tag": "colors", "include": [{"class": "cross", "count": 1, "color": "green"}],
              "prompt": "a green cross"}]
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "run"
    args = ["eval", "--model", "sd3-nano", "--steps", "2", "--prompts", str(tmp_path / "meta.jsonl"),
            "--metrics", "fid,clip", "--reference", str(ref), "--fid-features", str(feature_net), "--clip-model",
            str(tiny_clip), "--out", str(out), "--seeds", "1,2", "--layout", "geneval", "--samples-per-prompt", "2",
            "--batch-size", "4"]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["n_images"] == 12 and result["fid"] > 0 and 0 <= result["clip_score"] <= 100
    assert (out / "results.md").is_file() and (out / "grid.png").is_file()
    for seed in (1, 2):  # GenEval: <index>/metadata.jsonl (its line) + <index>/samples/<n>.png
        for k, line in enumerate(lines):
            folder = out / "images" / f"seed{seed}" / f"{k:05d}"
            assert json.loads((folder / "metadata.jsonl").read_text()) == line
            assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png"]
    first = out / "images" / "seed1" / "00000" / "samples" / "0000.png"
    stamp = first.stat().st_mtime_ns
    (out / "images" / "seed2" / "00002" / "samples" / "0001.png").unlink()  # as if cut off before the last image
    assert main(args) == 0
    assert first.stat().st_mtime_ns == stamp  # not made again
    assert (out / "images" / "seed2" / "00002" / "samples" / "0001.png").is_file()
    assert json.loads((out / "results.json").read_text())["fid"] == pytest.approx(result["fid"], rel=1e-6)
    capsys.readouterr()
    assert main(args + ["--guidance", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "guidance_scale" in err and str(out) in err


def test_generic_flags_are_refused_without_metrics_and_missing_weights_are_named(tmp_path, capsys):
    assert main(["eval", "--prompts", "p.txt"]) == 2
    assert "--prompts" in capsys.readouterr().err
    (tmp_path / "p.txt").write_text("a red circle\n")
    assert main(["eval", "--metrics", "clip", "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o"),
                 "--clip-model", str(tmp_path / "no_clip")]) == 2
    assert str(tmp_path / "no_clip") in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--fid-features"):
        from flashdistill.eval.t2i.fid import FID

        FID(tmp_path, features=str(tmp_path / "missing.pt"))


def test_eval_config_yaml_with_flags_winning(tiny_clip, tmp_path):
    import yaml

    (tmp_path / "p.txt").write_text("a red circle\ntwo blue squares\n")
    cfg = {"recipe": "t2i_eval", "prompts": str(tmp_path / "p.txt"), "metrics": ["clip"],
           "clip_model": str(tiny_clip), "steps": 2, "seeds": [3], "out": str(tmp_path / "from_yaml")}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["eval", "--config", str(tmp_path / "eval.yaml"), "--model", "sd3-nano",
                 "--out", str(tmp_path / "from_flag")]) == 0
    result = json.loads((tmp_path / "from_flag" / "results.json").read_text())  # the flag's --out won
    assert result["n_images"] == 2 and "fid" not in result and (tmp_path / "from_flag" / "images" / "seed3").is_dir()
    assert len(result["settings"]["timesteps"]) == 3  # steps: 2 from the file
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**cfg, "metric": ["clip"]}))
    assert main(["eval", "--config", str(tmp_path / "bad.yaml")]) == 2


def test_merge_chooses_the_ratio_by_clip_score_on_selection_seeds(tiny_clip, tmp_path):
    from flashdistill.models.tiny import tiny_sd3_pipeline
    from flashdistill.recipes.common import save_student

    (tmp_path / "p.txt").write_text("a red circle\ntwo blue squares\na green cross\na cyan triangle\n")
    for name, seed in (("low", 0), ("high", 1)):
        pipe = tiny_sd3_pipeline(seed=0)
        other = tiny_sd3_pipeline(seed=seed)
        save_student(pipe, other.transformer, tmp_path / name, [1.0, 0.5, 0.0], {"max_sequence_length": 8})
    out = tmp_path / "merged"
    assert main(["merge", "--low", str(tmp_path / "low"), "--high", str(tmp_path / "high"), "--out", str(out),
                 "--ratios", "0,1", "--metric", "clip", "--prompts", str(tmp_path / "p.txt"), "--clip-model",
                 str(tiny_clip), "--selection-seeds", "5", "--report-seeds", "6"]) == 0
    sweep = json.loads((out / "merge_sweep.json").read_text())
    scores = [r["clip_score"] for r in sweep["rows"]]
    assert sweep["metric"] == "clip" and all(s is not None for s in scores)
    assert sweep["chosen"] == sweep["rows"][int(np.argmax(scores))]["ratio_low"]  # the higher CLIP score wins
    assert sweep["report"]["seeds"] == [6] and sweep["report"]["clip_score"] >= 0
    assert json.loads((out / "flashdistill.json").read_text())["merge_metric"] == "clip"
