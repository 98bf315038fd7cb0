"""Fixtures for the trainer tests (helpers live in ``jobtools.py``)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from jobtools import JOB


@pytest.fixture(scope="session")
def mlp_job():
    """The job module, importable in-process (``mlp_job.train(cfg)``)."""
    spec = importlib.util.spec_from_file_location("mlp_job", JOB)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mlp_job"] = module
    spec.loader.exec_module(module)
    return module
