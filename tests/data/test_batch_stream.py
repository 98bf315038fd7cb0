"""BatchStream: order is a pure function of (seed, epoch, position); resuming jumps there without replay; the
per-process shares of k processes make up the 1-process batch."""

from __future__ import annotations

import pytest
import torch

from flashdistill.data import BatchStream


class Counting(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        return {"i": torch.tensor(i)}


def take(stream, k):
    return [next(stream)["i"].tolist() for _ in range(k)]


def test_epochs_cover_everything_once_and_differ():
    s = BatchStream(Counting(12), batch_size=4, seed=3)
    e0, e1 = take(s, 3), take(s, 3)
    assert sorted(sum(e0, [])) == list(range(12)) == sorted(sum(e1, []))
    assert e0 != e1 and s.state_dict()["epoch"] == 1


def test_resume_jumps_without_replay():
    full = take(BatchStream(Counting(10), batch_size=3, seed=1), 8)  # 3 batches per epoch (1 sample dropped)
    first = BatchStream(Counting(10), batch_size=3, seed=1)
    take(first, 5)
    data = Counting(10)
    resumed = BatchStream(data, batch_size=3, seed=1)
    resumed.load_state_dict(first.state_dict())
    assert take(resumed, 3) == full[5:] and data.reads == 9  # only the 3 new batches were read


def test_processes_split_the_global_batch():
    one = take(BatchStream(Counting(16), batch_size=8, seed=0), 4)
    shares = [take(BatchStream(Counting(16), batch_size=8, seed=0, rank=r, world_size=2), 4) for r in (0, 1)]
    assert [a + b for a, b in zip(*shares)] == one


def test_workers_give_the_same_order():
    assert take(BatchStream(Counting(12), 4, seed=5, num_workers=2), 5) == take(BatchStream(Counting(12), 4, seed=5), 5)


def test_bad_settings():
    with pytest.raises(ValueError, match="divisible by the 3 processes"):
        BatchStream(Counting(12), batch_size=4, world_size=3)
    with pytest.raises(ValueError, match="2 samples, fewer than one batch of 4"):
        BatchStream(Counting(2), batch_size=4)
    s = BatchStream(Counting(12), batch_size=4, seed=0)
    with pytest.raises(ValueError, match="seed changed since the checkpoint"):
        s.load_state_dict({**s.state_dict(), "seed": 9})
