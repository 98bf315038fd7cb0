"""Prompt files, image–caption folders, collate/split: good input loads, each bad input names its file/line/item."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from flashdistill.data import collate, split_batch
from flashdistill.data.errors import DataError
from flashdistill.data.images import ImageCaptionDataset
from flashdistill.data.prompts import PromptDataset, read_prompts
from flashdistill.types import Conditioning


def test_prompt_files(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a red circle"}\n\n{"prompt": " two squares ", "extra": 1}\n')
    txt = tmp_path / "p.txt"
    txt.write_text("a red circle\n\n  two squares\n")
    assert read_prompts(jsonl) == read_prompts(txt) == ["a red circle", "two squares"]
    ds = PromptDataset(jsonl)
    assert len(ds) == 2 and ds[1] == {"prompt": "two squares", "index": 1}
    assert collate([ds[0], ds[1]])["prompt"] == ["a red circle", "two squares"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "ok"}\n{"prompt": "  "}\n', r"p.jsonl:2: empty prompt"),
        ('{"prompt": "ok"}\n{"prompt": "x"\n', r"p.jsonl:2: not valid JSON"),
        ('{"text": "ok"}\n', r"p.jsonl:1: missing the 'prompt' field"),
        ('{"prompt": 3}\n', r"p.jsonl:1: 'prompt' must be a string"),
        ("\n\n", r"p.jsonl: no prompts found"),
    ],
)
def test_bad_prompt_files(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_prompts(path)


def test_prompt_file_missing_or_wrong_kind(tmp_path):
    with pytest.raises(DataError, match="prompt file not found: .*nope.jsonl"):
        read_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="must be .jsonl"):
        read_prompts(tmp_path / "p.csv")
    with pytest.raises(DataError, match="prompt 1 is empty"):
        PromptDataset(prompts=["fine", ""])


def make_pairs(root, sizes=((16, 16), (16, 16), (24, 16))):
    root.mkdir(exist_ok=True)
    lines = []
    for i, (w, h) in enumerate(sizes):
        arr = np.full((h, w, 3), 40 * i, dtype=np.uint8)
        Image.fromarray(arr).save(root / f"img_{i}.png")
        lines.append(json.dumps({"file": f"img_{i}.png", "prompt": f"scene {i}"}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_image_caption_pairs(tmp_path):
    ds = ImageCaptionDataset(make_pairs(tmp_path / "pairs"), resolution=8)
    item = ds[2]
    assert item["image"].shape == (3, 8, 8) and item["prompt"] == "scene 2" and item["file"] == "img_2.png"
    assert torch.allclose(item["image"], torch.full((3, 8, 8), 80 / 127.5 - 1))
    batch = collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 8, 8) and batch["file"] == ["img_0.png", "img_1.png", "img_2.png"]


def test_mismatched_image_sizes_name_the_file(tmp_path):
    ds = ImageCaptionDataset(make_pairs(tmp_path / "pairs"))  # no resolution: sizes must agree
    with pytest.raises(ValueError, match=r"field 'image': item 2 \(file='img_2.png'\) has shape \(3, 16, 24\)"):
        collate([ds[i] for i in range(3)])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"file": "img_0.png", "prompt": ""}', r"captions.jsonl:2: empty prompt for img_0.png"),
        ('{"file": "missing.png", "prompt": "x"}', r"captions.jsonl:2: image file not found: .*missing.png"),
        ('{"file": "broken.png", "prompt": "x"}', r"captions.jsonl:2: unreadable image .*broken.png"),
        ('{"prompt": "x"}', r"captions.jsonl:2: needs a string field 'file'"),
        ("{oops", r"captions.jsonl:2: not valid JSON"),
    ],
)
def test_bad_pairs_name_file_and_line(tmp_path, line, message):
    root = make_pairs(tmp_path / "pairs", sizes=((8, 8),))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    with open(root / "captions.jsonl", "a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match=message):
        ImageCaptionDataset(root)


def test_missing_folder_or_captions(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        ImageCaptionDataset(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="caption file not found: .*captions.jsonl"):
        ImageCaptionDataset(tmp_path / "empty")


def test_split_batch_and_collate_conditioning():
    cond = Conditioning(torch.randn(5, 3, 4), torch.randn(5, 2))
    batch = {"x": torch.arange(5), "cond": cond, "prompt": list("abcde"), "scale": 2.0}
    parts = split_batch(batch, 2)
    assert [p["x"].tolist() for p in parts] == [[0, 1], [2, 3, 4]]
    assert [p["prompt"] for p in parts] == [["a", "b"], ["c", "d", "e"]] and parts[1]["scale"] == 2.0
    assert torch.equal(parts[1]["cond"].pooled, cond.pooled[2:])
    items = [{"cond": cond[i], "x": torch.tensor(i)} for i in range(5)]
    back = collate(items)
    assert torch.equal(back["cond"].prompt_embeds, cond.prompt_embeds) and back["x"].tolist() == list(range(5))
    with pytest.raises(ValueError, match="cannot split a batch of 5 into 6"):
        split_batch(batch, 6)
