"""Typed configs: loading, overrides and the error message of every kind of bad input."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from flashdistill.config import (
    ConfigError,
    apply_overrides,
    config_class,
    dump_config,
    load_any_config,
    load_config,
    register_config,
)
from flashdistill.training.configs import OptimConfig, TrainConfig


@dataclass
class Inner:
    rate: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # a probability
    mode: str = field(default="a", metadata={"choices": ["a", "b"]})  # one of two modes


@register_config("_test_job")
@dataclass
class Job:
    name: str = "job"  # a label
    steps: int = field(default=10, metadata={"min": 1})  # how many
    lr: float = 1e-4  # learning rate
    flag: bool = False  # a switch
    grid: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.0])  # times
    pair: tuple[int, int] = (1, 2)  # two ints
    maybe: int | None = None  # optional
    inner: Inner = field(default_factory=Inner)  # a nested section
    train: TrainConfig = field(default_factory=TrainConfig)  # the shared trainer section

    def validate(self) -> None:
        if self.steps < len(self.grid):
            raise ConfigError(f"steps ({self.steps}) must be >= the grid length ({len(self.grid)})")


def write(tmp_path, text: str, name: str = "job.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text: str, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(Job, write(tmp_path, text), overrides)
    return str(info.value)


def test_defaults_yaml_and_typed_overrides(tmp_path):
    path = write(tmp_path, "recipe: _test_job\nlr: 1e-3\ninner:\n  mode: b\n")
    cfg = load_config(Job, path, ["steps=20", "flag=true", "grid=1,0.75,0.5,0.25,0", "pair=[3, 4]",
                                  "maybe=None", "inner.rate=0.25", "train.checkpoint.every=7", "name=42"])
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)  # YAML reads 1e-3 as a string: coerced
    assert cfg.steps == 20 and cfg.flag is True and cfg.maybe is None and cfg.name == "42"
    assert cfg.grid == [1.0, 0.75, 0.5, 0.25, 0.0] and cfg.pair == (3, 4)
    assert cfg.inner == Inner(rate=0.25, mode="b") and cfg.train.checkpoint.every == 7
    assert load_config(Job, path, ["maybe=3"]).maybe == 3


def test_dump_round_trips(tmp_path):
    cfg = load_config(Job, None, ["steps=12", "inner.mode=b", "train.resume=true"])
    text = dump_config(cfg)
    assert text.startswith("recipe: _test_job\n")
    assert load_config(Job, write(tmp_path, text)) == cfg


def test_unknown_key_names_it_and_the_nearest(tmp_path):
    msg = error_of(tmp_path, "stepz: 3\n")
    assert "unknown key 'stepz'" in msg and "did you mean 'steps'" in msg and "job.yaml" in msg
    msg = error_of(tmp_path, "inner:\n  rte: 0.1\n")
    assert "'inner.rte'" in msg and "'inner.rate'" in msg
    msg = error_of(tmp_path, "", ["train.checkpoint.evry=3"])
    assert "'train.checkpoint.evry'" in msg and "'train.checkpoint.every'" in msg


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("steps=abc", ["'steps' = 'abc'", "an integer"]),
        ("steps=2.5", ["'steps' = 2.5", "an integer"]),
        ("lr=fast", ["'lr' = 'fast'", "a number"]),
        ("flag=maybe", ["'flag' = 'maybe'", "boolean"]),
        ("pair=[1, 2, 3]", ["'pair'", "2 items"]),
        ("grid=1,x", ["'grid[1]' = 'x'", "a number"]),
        ("inner=3", ["'inner' = 3", "mapping"]),
        ("steps=None", ["'steps' = None", "null is not allowed"]),
        ("steps=0", ["'steps' = 0", "out of range", ">= 1"]),
        ("inner.rate=1.5", ["'inner.rate' = 1.5", "<= 1"]),
        ("inner.mode=c", ["'inner.mode' = 'c'", "one of 'a', 'b'"]),
        ("train.accelerate.mixed_precision=fp8", ["mixed_precision' = 'fp8'", "'no', 'bf16', 'fp16'"]),
    ],
)
def test_wrong_type_or_range_names_field_value_and_allowed(tmp_path, override, expected):
    msg = error_of(tmp_path, "", [override])
    for part in expected:
        assert part in msg, (part, msg)


def test_cross_field_validate_and_nested_validate(tmp_path):
    assert "grid length" in error_of(tmp_path, "steps: 2\n")
    msg = error_of(tmp_path, "train:\n  resume: true\n  resume_from: some/dir\n")
    assert "in 'train'" in msg and "resume_from" in msg
    with pytest.raises(ConfigError, match="betas"):
        load_config(OptimConfig, None, ["betas=[0.9, 1.5]"])


def test_missing_file_bad_yaml_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(Job, tmp_path / "nope.yaml")
    msg = error_of(tmp_path, "steps: [1, 2\n")
    assert "invalid YAML" in msg and "line" in msg
    assert "top level must be a mapping" in error_of(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Job, None, ["steps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


def test_missing_required_key(tmp_path):
    @dataclass
    class Needs:
        path: str  # no default

    with pytest.raises(ConfigError, match="missing required key 'path'"):
        load_config(Needs, write(tmp_path, "{}\n"))


def test_registry_discovers_modules_and_rejects_unknown_or_mismatched(tmp_path):
    assert config_class("generate_data").__name__ == "GenerateConfig"  # found by scanning the sources
    with pytest.raises(ConfigError, match="no config class is registered as recipe 'nonexistent_recipe'"):
        config_class("nonexistent_recipe")
    name, cfg = load_any_config(write(tmp_path, "recipe: _test_job\nsteps: 4\n"), ["flag=true"])
    assert name == "_test_job" and isinstance(cfg, Job) and cfg.flag
    with pytest.raises(ConfigError, match="missing a 'recipe"):
        load_any_config(write(tmp_path, "steps: 4\n"))
    with pytest.raises(ConfigError, match="for recipe 'generate_data', not '_test_job'"):
        load_config(Job, write(tmp_path, "recipe: generate_data\n"))
