"""``flashdistill export``: each variant round-trips through stock ``from_pretrained`` and stays close to the
unquantised model on the same noise; the packed int6 format is exact to its specification."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from flashdistill.assets_paths import teacher_path
from flashdistill.config import ConfigError
from flashdistill.deploy.export import export_folder
from flashdistill.models.int6 import dequantize_int6, pack_int6, quantize_int6, unpack_int6
from flashdistill.pipelines.folders import load_pipeline

PROMPTS = ["a red circle", "two blue squares", "a green triangle above a yellow circle", "a purple square"]
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
# mean |image difference| (pixels in [0, 1]) against the fp32 model on the same noise; measured on the demo's
# SD3.5-Flash student: int8 0.0018, int8-dynamic 0.0033, int6 0.0060 (4 steps, 4 prompts)
TOLERANCE = {"int8": 0.01, "int8-dynamic": 0.015, "int6": 0.03}


def _images(pipe, steps=4):
    g = torch.Generator("cpu").manual_seed(0)
    out = pipe(PROMPTS, height=32, width=32, num_inference_steps=steps, guidance_scale=1.0, max_sequence_length=16,
               generator=g, output_type="np").images
    return torch.from_numpy(out)


@pytest.fixture(scope="module")
def reference():
    pipe = load_pipeline(teacher_path())
    return _images(pipe)


def test_int6_packing_round_trips_and_is_4_values_in_3_bytes():
    codes = torch.randint(0, 64, (5, 64), dtype=torch.uint8)
    packed = pack_int6(codes)
    assert packed.shape == (5, 48) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int6(packed), codes)
    # the bit layout of the docstring: a | b << 6 | c << 12 | d << 18, little-endian
    one = pack_int6(torch.tensor([[1, 2, 3, 4]], dtype=torch.uint8))
    word = 1 | 2 << 6 | 3 << 12 | 4 << 18
    assert one.tolist() == [[word & 255, word >> 8 & 255, word >> 16 & 255]]


def test_int6_quantisation_error_is_bounded_by_half_a_step():
    w = torch.randn(16, 200)  # 200 is not a multiple of the group: the row is padded
    packed, scale = quantize_int6(w, group_size=64)
    back = dequantize_int6(packed, scale, 200)
    assert back.shape == w.shape
    step = scale.float().repeat_interleave(64, dim=1)[:, :200]
    assert ((back - w).abs() <= 0.5 * step + 1e-6).all()
    assert torch.equal(dequantize_int6(*quantize_int6(torch.zeros(3, 8), 8), 8), torch.zeros(3, 8))


@pytest.mark.parametrize("scheme", ["int8", "int8-dynamic", "int6"])
def test_quantised_export_loads_and_stays_close(tmp_path, reference, scheme):
    if scheme != "int6" and not HAS_TORCHAO:
        pytest.skip("torchao not installed (pip install 'flashdistill[quant]')")
    out = tmp_path / scheme
    info = export_folder(teacher_path(), out, quantize=scheme)
    ratio = info["export"]["transformer_bytes_ratio"]
    assert ratio <= (0.28 if scheme != "int6" else 0.20), ratio
    if scheme == "int6":
        pipe = load_pipeline(out)
        assert type(pipe.transformer.transformer_blocks[0].attn.to_q).__name__ == "Int6Linear"
    else:
        from diffusers import StableDiffusion3Pipeline  # the stock load, as a user would do it

        pipe = StableDiffusion3Pipeline.from_pretrained(out, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        assert pipe.transformer.config.quantization_config is not None
    diff = (_images(pipe) - reference).abs().mean().item()
    assert 0 < diff <= TOLERANCE[scheme], diff
    with pytest.raises(ConfigError, match="already quantised"):
        export_folder(out, tmp_path / "again", quantize="int6")


def test_t5_free_export_never_builds_t5_and_runs_num_steps_calls(tmp_path, monkeypatch):
    from diffusers import StableDiffusion3Pipeline
    from transformers import T5EncoderModel

    out = tmp_path / "not5"
    info = export_folder(teacher_path(), out, no_t5=True)
    assert info["export"]["no_t5"] and not (out / "text_encoder_3").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("a T5 encoder was built")

    monkeypatch.setattr(T5EncoderModel, "__init__", refuse)
    monkeypatch.setattr(T5EncoderModel, "from_pretrained", refuse)
    pipe = StableDiffusion3Pipeline.from_pretrained(out, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    calls = []
    pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    _images(pipe, steps=3)
    assert len(calls) == 3 and pipe.text_encoder_3 is None
    assert load_pipeline(out).text_encoder_3 is None  # flashdistill finds the nulls itself


@pytest.mark.parametrize("kwargs, match", [
    ({"quantize": "int4"}, "unknown scheme"),
    ({}, "nothing to do"),
])
def test_export_refuses_bad_requests(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        export_folder(teacher_path(), tmp_path / "x", **kwargs)


def test_export_refuses_a_folder_that_is_not_a_pipeline(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ConfigError, match="not a diffusers pipeline folder"):
        export_folder(tmp_path / "src", tmp_path / "out", no_t5=True)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
