"""The data tests run tiny models whose ops are far too small to gain from threads; one thread keeps them fast
(and stable) even when the machine is busy with other jobs."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
