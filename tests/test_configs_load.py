"""Every YAML shipped under ``configs/`` is headed by the command that runs it, names its config class with
``recipe:`` (a registered class), loads and validates; the accelerate configs are well-formed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flashdistill.config import load_any_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
JOB_YAMLS = sorted(p for p in CONFIGS.rglob("*.yaml") if "accelerate" not in p.relative_to(CONFIGS).parts)
ACCELERATE_YAMLS = sorted((CONFIGS / "accelerate").glob("*.yaml"))
DISTRIBUTED_TYPES = {"NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED"}


def header_command(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0] if path.read_text(encoding="utf-8") else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


def test_configs_exist():
    assert JOB_YAMLS, f"no job configs found in {CONFIGS}"
    assert {p.name for p in ACCELERATE_YAMLS} >= {"fsdp.yaml", "single_gpu.yaml", "multi_gpu.yaml"}


@pytest.mark.parametrize("path", JOB_YAMLS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_job_config_loads_and_validates(path):
    command = header_command(path)
    assert "flashdistill" in command or "accelerate launch" in command, (
        f"{path.name}: the first line must be a comment with the command that runs it")
    assert path.name in command or path.stem in command, f"{path.name}: the header command should use this file"
    name, cfg = load_any_config(path)  # unknown recipe names, keys, types and ranges all raise here
    assert name == yaml.safe_load(path.read_text())["recipe"]
    assert cfg is not None


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.name)
def test_accelerate_config_is_wellformed(path):
    assert header_command(path), f"{path.name}: start with a comment showing the launch command"
    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] in DISTRIBUTED_TYPES
    assert isinstance(data["num_processes"], int) and data["num_processes"] >= 1
    assert data["mixed_precision"] in ("no", "bf16", "fp16")
    if data["distributed_type"] == "FSDP":
        fsdp = data["fsdp_config"]
        assert fsdp["fsdp_state_dict_type"] in ("SHARDED_STATE_DICT", "FULL_STATE_DICT")
