"""``flashdistill export``: a student folder -> a deployment folder (T5-free and/or 8-bit / packed 6-bit).

SD3.5-Flash §4.5 ships its student without T5-XXL (null embeddings: SD3.5 was trained with encoder dropout) and
with its MM-DiT in 8 and 6 bits. Each variant here is a pipeline folder:

* ``--no-t5``: ``text_encoder_3``/``tokenizer_3`` are left out and ``model_index.json`` records them as
  ``[null, null]``; stock ``StableDiffusion3Pipeline.from_pretrained(out, text_encoder_3=None, tokenizer_3=None)``
  loads it (diffusers 0.42 does not list T5 among SD3's optional components, so a bare ``from_pretrained(out)``
  refuses the nulls it wrote itself; ``flashdistill sample/eval`` pass them) and feeds zeros for T5's slice
  of the prompt embeddings, ``max_sequence_length`` tokens long (recorded in ``flashdistill.json``: it changes the
  output, so use the recorded value);
* ``--quantize int8`` / ``int8-dynamic``: torchao on the transformer (weight-only int8, or int8 weights with int8
  dynamic activations); stock ``from_pretrained(out, dtype=torch.float32)`` restores it quantised when torchao is
  installed (give the recorded ``dtype``: without one diffusers' torchao loader picks bf16 for the unquantised
  parts while the pipeline feeds fp32 latents, and the patch convolution raises);
* ``--quantize int6``: our packed 6-bit format (``models/int6.py``, 0.75 bytes per weight); loaded by
  ``flashdistill sample/eval`` or ``StableDiffusion3Pipeline.from_pretrained(out, transformer=
  load_int6_transformer(out / "transformer"))``.

The folder is written to ``<out>.partial`` and renamed when complete, so a crash leaves no half folder at ``out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..config import ConfigError
from ..pipelines.folders import RUN_SETTINGS_FILE, check_pipeline_folder, has_t5, is_lora_folder, read_run_settings
from ..pipelines.model_card import CARD_FILE, SAMPLE_FILE, write_model_card
from ..pipelines.quantized import (
    SCHEMES,
    TORCHAO_SCHEMES,
    folder_dtype,
    save_int6_transformer,
    save_torchao_transformer,
    transformer_quantization,
    weight_bytes,
)

__all__ = ["add_args", "run", "export_folder", "T5_COMPONENTS"]

T5_COMPONENTS = ("text_encoder_3", "tokenizer_3")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="student pipeline folder (a LoRA student is merged first)")
    parser.add_argument("--out", required=True, help="new folder for the exported pipeline")
    parser.add_argument("--no-t5", action="store_true", help="leave out the T5 text encoder (null embeddings)")
    parser.add_argument("--quantize", default=None, metavar="SCHEME",
                        help=f"quantise the transformer: {' | '.join(SCHEMES)}")


def run(args) -> int:
    info = export_folder(args.model, args.out, no_t5=args.no_t5, quantize=args.quantize)
    exp = info["export"]
    print(f"exported {args.model} -> {args.out}: T5 {'dropped' if exp['no_t5'] else 'kept'}, transformer "
          f"{exp['quantize'] or 'unquantised'}, {exp['transformer_bytes'] / 1e6:.2f} MB "
          f"({exp['transformer_bytes_ratio']:.3f}x the source's {exp['source_transformer_bytes'] / 1e6:.2f} MB)")
    return 0


def export_folder(model: str | Path, out: str | Path, no_t5: bool = False, quantize: str | None = None) -> dict:
    """Write the exported pipeline folder ``out``; returns its ``flashdistill.json`` settings."""
    model, out = Path(model), Path(out)
    if quantize is not None and quantize not in SCHEMES:
        raise ConfigError(f"--quantize {quantize!r}: unknown scheme; choose one of {', '.join(SCHEMES)}")
    if not no_t5 and quantize is None:
        raise ConfigError("export: nothing to do; give --no-t5 and/or --quantize "
                          f"{'|'.join(SCHEMES)}")
    if not model.exists():
        raise ConfigError(f"--model {model}: no such folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not empty; choose a new folder")
    if quantize in TORCHAO_SCHEMES:
        from ..pipelines.quantized import torchao_config

        torchao_config(quantize)  # a missing torchao is named before any work
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    source = model
    if is_lora_folder(model):
        from ..pipelines.merge_lora import merge_lora_folder

        source = merge_lora_folder(model, partial.with_name(out.name + ".merged"))
    try:
        return _export(model, source, partial, out, no_t5, quantize)
    finally:
        if source != model:
            shutil.rmtree(source, ignore_errors=True)


def _export(model: Path, source: Path, partial: Path, out: Path, no_t5: bool, quantize: str | None) -> dict:
    check_pipeline_folder(source)
    settings = read_run_settings(source)
    already = transformer_quantization(source)
    if quantize is not None and already is not None:
        raise ConfigError(f"--model {model}: its transformer is already quantised ({already}); export from the "
                          "unquantised student")
    drop = set(T5_COMPONENTS) if no_t5 else set()
    # the source's card and sample describe the source: the export gets its own card (without a sample: rendering
    # one would run the model here, on the CPU, which for SD3.5 Medium takes minutes)
    skip = {*drop, RUN_SETTINGS_FILE, ".lock", CARD_FILE, SAMPLE_FILE} | ({"transformer"} if quantize else set())
    shutil.copytree(source, partial, ignore=lambda d, names: [n for n in names if Path(d) == source and n in skip])
    if no_t5:
        index_path = partial / "model_index.json"
        index = json.loads(index_path.read_text())
        index.update({name: [None, None] for name in T5_COMPONENTS})
        index_path.write_text(json.dumps(index, indent=2) + "\n")
    if quantize in TORCHAO_SCHEMES:
        save_torchao_transformer(source / "transformer", partial / "transformer", quantize)
    elif quantize == "int6":
        save_int6_transformer(source / "transformer", partial / "transformer")
    src_bytes = weight_bytes(source / "transformer")
    new_bytes = weight_bytes(partial / "transformer")
    info = {**settings, "kind": settings.get("kind", "student")}
    info["export"] = {"source": str(model), "no_t5": no_t5 or not has_t5(source),
                      "quantize": quantize or already, "transformer_bytes": new_bytes,
                      "source_transformer_bytes": src_bytes, "transformer_bytes_ratio": new_bytes / src_bytes,
                      "max_sequence_length": settings.get("max_sequence_length", 256),
                      "dtype": str(folder_dtype(source / "transformer")).removeprefix("torch.")}
    (partial / RUN_SETTINGS_FILE).write_text(json.dumps(info, indent=2) + "\n")
    write_model_card(partial, name=out.name)
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return info

