"""The ``flashdistill`` command line: a thin dispatcher.

Each subcommand lives in the module that owns the work and exposes ``add_args(parser)`` and ``run(args)``; they
are imported only when their subcommand runs, so ``flashdistill --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main", "COMMANDS"]

# name -> (module exposing add_args/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("flashdistill.demo", "run the end-to-end demo on the embedded SD3-nano world"),
    "distill": ("flashdistill.recipes", "run one distillation stage from a recipe YAML"),
    "eval": ("flashdistill.eval.model_eval", "judge a model or an image folder on the Shapes world (ShapesEval, FD)"),
    "merge": ("flashdistill.recipes.merge", "merge split-timestep student branches, sweeping the ratio"),
    "merge-lora": ("flashdistill.pipelines.merge_lora", "fold a LoRA student into its base as a full pipeline folder"),
    "export": ("flashdistill.deploy.export", "export a student without T5 and/or with int8 / packed int6 weights"),
    "bench": ("flashdistill.bench", "latency, memory, quality per deployment variant and training cost, in one run"),
    "sample": ("flashdistill.pipelines.sample", "sample images from a teacher or a distilled student folder"),
    "generate-data": ("flashdistill.data.generate", "run a teacher over prompts and write a synthetic dataset"),
    "train-teacher": ("flashdistill.shapes.teacher", "train a Shapes-world teacher (SD3-nano, UNet-nano, PixArt-nano)"),
    "shapes-prompts": ("flashdistill.shapes.prompt_file", "write Shapes captions as a prompt file"),
    "info": ("flashdistill.pipelines.info", "print versions, device and the shipped assets"),
}


def _register(name: str, module: str, parser: argparse.ArgumentParser) -> None:
    mod = importlib.import_module(module)
    add = getattr(mod, "add_args", None) or getattr(mod, "add_" + name.replace("-", "_") + "_args")
    add(parser)
    parser.set_defaults(_run=getattr(mod, "run", None) or getattr(mod, "run_" + name.replace("-", "_")))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashdistill", description="Distil diffusion / flow models into "
                                     "fast 4-step and 2-step students (SD3.5-Flash, Flash Diffusion).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _register(name, module, p)
    return parser


def _no_torchvision_fallback_note(record: logging.LogRecord) -> bool:
    return "requires torchvision (not installed)" not in record.getMessage()


def _no_empty_fp32_list_note(record: logging.LogRecord) -> bool:
    return "should be kept in float32: []" not in record.getMessage()


def _quiet_torchvision_fallback() -> None:
    """Drop two library notes that say nothing here: importing diffusers' SD3 pipeline makes transformers warn that
    its image processors fall back to PIL without torchvision (we use none); and diffusers warns on every dtype
    cast of a model that its fp32-only modules would be cast too, even when that list is empty (``[]``). The
    same warning with modules in the list still shows."""
    for name, note in (("transformers.utils.import_utils", _no_torchvision_fallback_note),
                       ("diffusers.models.modeling_utils", _no_empty_fp32_list_note)):
        logger = logging.getLogger(name)
        if note not in logger.filters:
            logger.addFilter(note)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_torchvision_fallback()
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only=command)
    if command is None and (not argv or argv[0] in ("-h", "--help")):
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    from .config import ConfigError
    from .data.errors import DataError

    try:
        return int(args._run(args) or 0)
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"flashdistill {command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
