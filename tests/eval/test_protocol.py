"""The measurement protocol's statistics: the bootstrap interval is of the reported category-balanced mean, it
narrows with more prompts, and seed lists are parsed strictly."""

from __future__ import annotations

import numpy as np
import pytest

from flashdistill.config import ConfigError
from flashdistill.eval.protocol import bootstrap_ci, parse_seeds, t_interval


def _cells(rng, p, n, sets=4, cats=6):
    return [[(rng.random(n) < p).tolist() for _ in range(cats)] for _ in range(sets)]


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_prompts():
    rng = np.random.default_rng(0)
    small, large = _cells(rng, 0.6, 16), _cells(rng, 0.6, 256)
    m_s, lo_s, hi_s = bootstrap_ci(small)
    m_l, lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < m_s < hi_s and lo_l < m_l < hi_l
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)  # 16x the prompts: about a quarter of the width
    assert lo_l < 0.6 < hi_l
    # the statistic is the mean over sets of the mean over categories (unequal category sizes do not re-weight it)
    cells = [[[1, 1, 1, 1], [0]], [[1], [0, 0, 0]]]
    assert bootstrap_ci(cells)[0] == pytest.approx(0.5)


def test_bootstrap_coverage_is_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(200):
        _, lo, hi = bootstrap_ci(_cells(rng, 0.7, 16), n_boot=400, seed=int(rng.integers(1 << 30)))
        hits += lo <= 0.7 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_t_interval_and_seed_parsing():
    mean, lo, hi = t_interval([70.0, 72.0, 74.0, 76.0])
    assert mean == 73.0 and lo < 73.0 < hi and hi - lo == pytest.approx(2 * 3.182 * np.std([70, 72, 74, 76],
                                                                                           ddof=1) / 2)
    assert parse_seeds("1,2,3,4") == [1, 2, 3, 4]
    for bad in ("1,x", "", "1,1", "-1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_results_table_rows():
    from flashdistill.eval.protocol import results_table

    entry = {"shapes_eval": 0.5, "ci95": [0.4, 0.6], "categories": {"counting": 0.25}, "fd": 70.0,
             "fd_ci95": [60.0, 80.0], "precision": 0.9, "recall": 0.8}
    lines = results_table({"student": {"train": entry, "heldout": entry, "seconds_per_image": 0.0123}},
                          ["counting", "position"])
    assert len(lines) == 3 and lines[0].count("|") == lines[2].count("|") == lines[1].count("|")
    assert "| student | 0.500 [0.400, 0.600] |" in lines[2] and "0.25 | nan" in lines[2] and "12.3 |" in lines[2]
