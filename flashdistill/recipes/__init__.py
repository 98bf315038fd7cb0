"""Distillation recipes: readable procedures, one per paper, selected by a config's ``recipe:`` key.

``flashdistill distill --config FILE [key=value ...] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["RECIPES", "add_args", "run"]

# recipe name (the YAML's `recipe:` key) -> module defining the config class and run_recipe(cfg)
RECIPES = {"sd35_flash": "flashdistill.recipes.sd35_flash", "flash_diffusion": "flashdistill.recipes.flash_diffusion"}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML (its `recipe:` key picks the recipe)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.max_steps=10")


def run(args) -> int:
    from ..config import ConfigError, dump_config, load_any_config, read_yaml

    name = read_yaml(args.config).get("recipe")
    if name not in RECIPES:
        raise ConfigError(f"{args.config}: `recipe: {name}` is not one of {sorted(RECIPES)}")
    module = importlib.import_module(RECIPES[name])
    overrides = list(args.overrides) + (["train.resume=true"] if args.resume else [])
    _, cfg = load_any_config(args.config, overrides)
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    module.run_recipe(cfg)
    return 0
