"""The package installs like one: a wheel built from this tree, installed (not editable) in a fresh virtual
environment, runs the CLI from a folder that is not the source tree — the shipped configs and the SD3-nano teacher
come from the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(venv_bin, env, workdir)``: a fresh venv holding only the wheel; its dependencies (torch, diffusers, ...)
    are borrowed from the test's own environment through a ``.pth`` path line (so nothing is downloaded), which
    does not run that environment's editable-install hook."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w",
          str(dist)], cwd=tmp, env=os.environ.copy())
    (wheel,) = dist.glob("flashdistill-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=os.environ.copy())
    bin_dir = venv / "bin"
    site = Path(subprocess.check_output([str(bin_dir / "python"), "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
                .strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "-q",
          str(wheel)], cwd=tmp, env=os.environ.copy())
    work = tmp / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return bin_dir, env, work


def test_the_installed_package_is_the_wheel_not_the_source_tree(installed):
    bin_dir, env, work = installed
    where = _run([str(bin_dir / "python"), "-c", "import flashdistill, pathlib; print(flashdistill.__file__)"],
                 work, env).strip()
    assert str(bin_dir.parent) in where and str(ROOT) not in where
    configs = _run([str(bin_dir / "python"), "-c", "from flashdistill.assets_paths import CONFIGS; "
                    "print(sorted(p.name for p in CONFIGS.rglob('*.yaml')))"], work, env)
    assert "nano_dmd.yaml" in configs and "sd35m_dmd.yaml" in configs and "single_gpu.yaml" in configs


def test_cli_help_info_and_a_tiny_distill_from_another_folder(installed):
    bin_dir, env, work = installed
    exe = str(bin_dir / "flashdistill")
    assert "--recipe" in _run([exe, "demo", "--help"], work, env)
    assert "sd3-nano" in _run([exe, "info"], work, env)
    (work / "prompts.txt").write_text("a red circle\ntwo blue squares\na green triangle\na cyan cross\n")
    # the documented commands, run where no configs/ folder exists: the package's own YAMLs are found
    _run([exe, "generate-data", "--config", "configs/sd35_flash/nano_data.yaml", "prompts=prompts.txt",
          "out=data", "num_steps=4", "shard_size=4", "batch_size=4"], work, env)
    _run([exe, "distill", "--config", "configs/sd35_flash/nano_pretrain.yaml", "data=data", "out=student",
          "batch_size=4", "train.max_steps=2", "train.run_dir=run", "train.log.progress_bar=false"], work, env)
    assert (work / "student" / "model_index.json").is_file() and (work / "student" / "README.md").is_file()
    assert not (work / "configs").exists()
