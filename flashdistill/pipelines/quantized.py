"""Quantised transformer folders: torchao int8 (stock ``from_pretrained`` restores them) and our packed int6.

An int6 transformer folder holds the stock ``config.json`` and ``int6.safetensors`` (no
``diffusion_pytorch_model.safetensors``: stock ``from_pretrained`` on it fails loudly instead of building random
weights). ``load_int6_transformer`` rebuilds the model on the meta device and loads the packed tensors into
``Int6Linear`` layers; the pipeline around it is stock ``StableDiffusion3Pipeline.from_pretrained(..., transformer=)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ConfigError
from ..errors import DataError
from ..models.int6 import GROUP_SIZE, quantize_linears

__all__ = ["SCHEMES", "TORCHAO_SCHEMES", "INT6_FILE", "INT6_FORMAT", "torchao_config", "save_torchao_transformer",
           "save_int6_transformer", "load_int6_transformer", "transformer_quantization", "weight_bytes", "folder_dtype"]

TORCHAO_SCHEMES = {"int8": "Int8WeightOnlyConfig", "int8-dynamic": "Int8DynamicActivationInt8WeightConfig"}
SCHEMES = (*TORCHAO_SCHEMES, "int6")
INT6_FILE = "int6.safetensors"
INT6_FORMAT = "flashdistill.int6/1"


def torchao_config(scheme: str):
    """diffusers' ``TorchAoConfig`` around the torchao config object for ``scheme`` (the string shortcuts are gone
    from diffusers). A missing torchao is a ``ConfigError`` naming the extra that brings it."""
    try:
        import torchao.quantization as tq
    except ImportError:
        raise ConfigError(f"--quantize {scheme}: needs torchao, which is not installed "
                          "(pip install 'flashdistill[quant]')") from None
    from diffusers import TorchAoConfig

    return TorchAoConfig(getattr(tq, TORCHAO_SCHEMES[scheme])())


def save_torchao_transformer(src: Path, out: Path, scheme: str, dtype: torch.dtype | None = None) -> None:
    """Quantise ``src`` (a transformer folder) with torchao while loading it and save it to ``out``; its
    ``config.json`` carries the quantisation config, so stock ``from_pretrained(out)`` restores it quantised."""
    import logging

    from diffusers import SD3Transformer2DModel

    dtype = dtype or folder_dtype(src)
    log = logging.getLogger("diffusers.quantizers.torchao.torchao_quantizer")
    level = log.level
    log.setLevel(logging.ERROR)  # "only bfloat16 is supported": fp32 works on CPU (measured, tests/deploy)
    try:
        model = SD3Transformer2DModel.from_pretrained(src, quantization_config=torchao_config(scheme), dtype=dtype)
    finally:
        log.setLevel(level)
    model.save_pretrained(out)


def save_int6_transformer(src: Path, out: Path, group_size: int = GROUP_SIZE) -> None:
    """Pack every Linear weight of the transformer in ``src`` to 6 bits (``models/int6.py``); other tensors go to
    fp16 when the model is fp32 and they fit, else stay in the model's dtype."""
    from diffusers import SD3Transformer2DModel
    from safetensors.torch import save_file

    model = SD3Transformer2DModel.from_pretrained(src)
    dtype = next(model.parameters()).dtype
    linears = quantize_linears(model, group_size)
    state, small = {}, []
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().contiguous()
        if tensor.is_floating_point() and tensor.dtype == torch.float32 and not key.endswith(".scale"):
            half = tensor.to(torch.float16)
            if torch.isfinite(half).all() and (half.float() - tensor).abs().max() <= 1e-3 * tensor.abs().max():
                tensor, _ = half, small.append(key)
        state[key] = tensor
    out.mkdir(parents=True, exist_ok=True)
    model.save_config(out)
    save_file(state, out / INT6_FILE, metadata={
        "format": INT6_FORMAT, "group_size": str(group_size), "dtype": str(dtype).removeprefix("torch."),
        "linears": json.dumps(linears), "fp16_tensors": json.dumps(small)})


def load_int6_transformer(folder: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """The ``SD3Transformer2DModel`` of an int6 folder, with ``Int6Linear`` layers, in ``dtype`` (default: the
    dtype it was exported from) on ``device``."""
    from accelerate import init_empty_weights
    from diffusers import SD3Transformer2DModel
    from safetensors import safe_open

    folder = Path(folder)
    path = folder / INT6_FILE
    if not path.exists():
        raise ConfigError(f"{folder}: no {INT6_FILE}; not an int6 transformer folder written by flashdistill export")
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        meta = f.metadata() or {}
        if meta.get("format") != INT6_FORMAT:
            raise DataError(f"{path}: format {meta.get('format')!r}, expected {INT6_FORMAT!r}")
        state = {key: f.get_tensor(key) for key in f.keys()}
    dtype = dtype or getattr(torch, meta["dtype"])
    with init_empty_weights():
        model = SD3Transformer2DModel.from_config(SD3Transformer2DModel.load_config(folder))
    if dtype != torch.float32:
        torch.nn.Module.to(model, dtype)  # (ModelMixin.to warns about fp32-kept modules; SD3 has none)
    quantize_linears(model, int(meta["group_size"]), names=json.loads(meta["linears"]))
    for key, tensor in state.items():
        if tensor.is_floating_point() and not key.endswith(".scale"):
            state[key] = tensor.to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing or unexpected or left:
        raise DataError(f"{path}: does not match its config.json (missing {sorted(missing)[:5]}, unexpected "
                        f"{sorted(unexpected)[:5]}, unloaded {left[:5]})")
    return model.to(device).eval().requires_grad_(False)


def transformer_quantization(folder: str | Path) -> str | None:
    """The scheme a pipeline folder's transformer is stored in (``None`` for plain weights)."""
    tdir = Path(folder) / "transformer"
    if (tdir / INT6_FILE).exists():
        return "int6"
    try:
        config = json.loads((tdir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    quant = config.get("quantization_config")
    if not quant:
        return None
    if quant.get("quant_method") == "torchao":
        qtype = json.dumps(quant.get("quant_type", ""))
        return "int8-dynamic" if "Dynamic" in qtype else "int8" if "Int8" in qtype else "torchao"
    return str(quant.get("quant_method", "quantised"))


def weight_bytes(folder: str | Path) -> int:
    """Bytes of the weight files (``*.safetensors``, ``*.bin``) in a component folder."""
    folder = Path(folder)
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))


def folder_dtype(src: Path) -> torch.dtype:
    from safetensors import safe_open

    for f in sorted(src.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                t = handle.get_slice(key)
                name = t.get_dtype()
                return {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}.get(name, torch.float32)
    return torch.float32

