"""``flashdistill generate-data``: run a teacher over a prompt set and write a cached synthetic dataset.

Each sample ``k`` gets its own noise from a generator seeded by ``(seed, k)``, so the result does not
depend on batch size, sharding or interruptions. The teacher (with classifier-free guidance) is integrated
with Euler over its shifted ``num_steps`` grid; with ``trajectory_grid`` (e.g. the 4-step student grid
``1,0.75,0.5,0.25,0``) those times are merged into the teacher's grid and the states ``x_t`` there are
stored as ``trajectory (n, K, C, H, W)`` (what trajectory-guidance pre-training needs). With ``images``
instead of a teacher solve, the image–caption pairs of a folder are encoded (VAE latents + text embeddings)
so training can drop the encoders.

The output (see :mod:`flashdistill.data.cache`) is written shard by shard, atomically; running the same
command again continues where it stopped, and under ``accelerate launch`` process ``r`` of ``k`` takes
every ``k``-th shard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError, dump_config, load_config
from .generate_config import GenerateConfig, teacher_grid

__all__ = ["GenerateConfig", "add_generate_data_args", "run_generate_data", "generate", "teacher_grid"]


def add_generate_data_args(parser: argparse.ArgumentParser) -> None:
    """Flags of ``flashdistill generate-data`` (each maps onto a :class:`GenerateConfig` field)."""
    parser.add_argument("--config", default=None, help="YAML with GenerateConfig keys (flags override it)")
    parser.add_argument("--prompts", help="prompt file (.jsonl with a 'prompt' field, or .txt one per line)")
    parser.add_argument("--images", help="folder with captions.jsonl: encode pairs instead of sampling")
    parser.add_argument("--out", help="output dataset folder")
    parser.add_argument(
        "--model", help="teacher pipeline folder ('sd3-nano' = shipped teacher, 'tiny' = test)"
    )
    parser.add_argument("--steps", dest="num_steps", type=int, help="teacher Euler steps")
    parser.add_argument("--guidance", dest="guidance_scale", type=float, help="CFG scale (<= 1 disables)")
    parser.add_argument("--shift", type=float, help="SD3 shift of the teacher grid")
    parser.add_argument("--trajectory-grid", help="store x_t at these times, e.g. 1,0.75,0.5,0.25,0")
    parser.add_argument("--samples-per-prompt", type=int)
    parser.add_argument("--limit", type=int, help="first N prompts/images only")
    parser.add_argument("--resolution", type=int, help="image side in pixels")
    parser.add_argument("--max-sequence-length", type=int, help="T5 tokens")
    parser.add_argument("--shard-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--save-images", action="store_const", const=True, help="also write PNGs")
    parser.add_argument("--device", help="auto, cpu, cuda:0, ...")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="extra dotted key=value overrides")


def config_from_args(args: argparse.Namespace) -> GenerateConfig:
    """Merge ``--config`` YAML, flags and ``key=value`` overrides into a validated config."""
    names = [f for f in GenerateConfig.__dataclass_fields__ if getattr(args, f, None) is not None]
    overrides = [f"{n}={getattr(args, n)}" for n in names] + list(getattr(args, "overrides", []) or [])
    return load_config(GenerateConfig, args.config, overrides)


def run_generate_data(args: argparse.Namespace) -> int:
    """CLI entry: validate, then generate (or print the config with ``--dry-run``)."""
    from .errors import DataError

    try:
        cfg = config_from_args(args)
        if args.dry_run:
            print(dump_config(cfg), end="")
            return 0
        out = generate(cfg)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if out is not None:
        print(f"dataset complete: {out}")
    else:
        print("this process's shards are written; the last process to finish writes index.json")
    return 0


def generate(cfg: GenerateConfig, pipe=None, progress: bool = True) -> Path | None:
    """Write (or finish) the dataset; returns its folder once complete (``None`` if other processes still
    have shards to write). ``pipe`` can be given to skip loading (tests)."""
    from .teacher_data import write_dataset

    cfg.check_paths()
    return write_dataset(cfg, pipe=pipe, progress=progress)
