"""``flashdistill eval --config FILE``: the same settings as the ``--metrics`` flags, as a YAML (a flag given on
the command line wins over the file)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ...config import ConfigError, load_config, register_config

__all__ = ["T2IEvalConfig", "apply_config"]


@register_config("t2i_eval")
@dataclass
class T2IEvalConfig:
    """Judge a text-to-image model with FID / CLIP score (see ``flashdistill eval --help``)."""

    model: str | None = None  # pipeline folder, LoRA folder, or sd3-nano / unet-nano / pixart-nano
    prompts: str | None = None  # one per line, COCO captions JSON, or GenEval metadata jsonl
    out: str | None = None  # run folder
    metrics: list[str] = field(default_factory=lambda: ["fid", "clip"],
                               metadata={"choices": ["fid", "clip", "pickscore"]})
    reference: str | None = None  # FID reference image folder
    fid_inception: str | None = None  # torch-fidelity InceptionV3 weights (local file)
    fid_features: str | None = None  # or a feature network saved with torch.export.save
    fid_resize: int | None = field(default=None, metadata={"min": 1})
    clip_model: str | None = None  # local transformers CLIP folder
    pickscore_model: str | None = None  # local PickScore_v1 CLIP folder (with its processor)
    steps: int | None = field(default=None, metadata={"min": 1})
    guidance: float | None = field(default=None, metadata={"min": 0.0})
    seeds: list[int] = field(default_factory=lambda: [1])
    batch_size: int = field(default=16, metadata={"min": 1})
    resolution: int | None = field(default=None, metadata={"min": 8})
    samples_per_prompt: int = field(default=1, metadata={"min": 1})
    layout: str = field(default="flat", metadata={"choices": ["flat", "geneval"]})
    limit: int | None = field(default=None, metadata={"min": 1})
    no_t5: bool = False


def apply_config(args, parser_defaults: dict) -> None:
    """Fill ``args`` from ``args.config`` wherever the flag was left at its default."""
    cfg = load_config(T2IEvalConfig, args.config, [])
    for f in fields(T2IEvalConfig):
        value = getattr(cfg, f.name)
        if f.name == "metrics":
            value = ",".join(value)
        elif f.name == "seeds":
            value = ",".join(map(str, value))
        if not hasattr(args, f.name):
            raise ConfigError(f"{args.config}: key {f.name!r} has no flag")  # keeps the YAML and the CLI in step
        if getattr(args, f.name) == parser_defaults.get(f.name):
            setattr(args, f.name, value)
