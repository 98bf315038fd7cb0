"""Shared fixtures: tiny offline models (built once per session) and quiet, deterministic torch."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)  # tiny models: one thread is faster and robust to a busy machine (measured here)


@pytest.fixture(scope="session")
def tiny_pipe():
    from flashdistill.models.tiny import tiny_sd3_pipeline

    pipe = tiny_sd3_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    before = _fingerprint(pipe)
    yield pipe
    # shared by every test: one that swaps a component or trains weights in place silently breaks later ones
    assert _fingerprint(pipe) == before, "a test modified the session-wide tiny_pipe (copy it instead)"


def _fingerprint(pipe):
    parts = {name: id(module) for name, module in pipe.components.items()}
    parts["scheduler_config"] = dict(pipe.scheduler.config)
    parts["weights"] = sum(float(p.detach().double().sum()) for p in pipe.transformer.parameters())
    return parts


@pytest.fixture
def diffusers_messages():
    """The messages diffusers logs during the test (its loggers do not propagate to the root logger, so pytest's
    caplog does not see them)."""
    import logging

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
