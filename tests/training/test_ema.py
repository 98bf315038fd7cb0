"""EMA maths: the recurrence, its closed form, half-life, warm-up, state round trip and weight swapping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flashdistill.training import EMA, decay_from_half_life


def model_with(value: float) -> nn.Module:
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(value)
    return m


def test_closed_form_constant_target():
    m = model_with(0.0)
    ema = EMA(m, decay=0.9)
    with torch.no_grad():
        m.weight.fill_(1.0)
    for _ in range(7):
        ema.update(m)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 1 - 0.9**7), atol=1e-7)


def test_recurrence_on_a_sequence():
    m = model_with(0.0)
    ema, expected = EMA(m, decay=0.75), torch.zeros(1)
    for value in [3.0, -1.0, 2.0, 0.5]:
        with torch.no_grad():
            m.bias.fill_(value)
        ema.update(m)
        expected = 0.75 * expected + 0.25 * value
    assert torch.allclose(ema.shadow["bias"], expected, atol=1e-7)


def test_half_life_halves_the_weight_of_an_update():
    d = decay_from_half_life(10)
    assert d**10 == pytest.approx(0.5)
    assert EMA(model_with(0), half_life=10).decay == pytest.approx(d)
    with pytest.raises(ValueError):
        EMA(model_with(0), decay=0.9, half_life=3)
    with pytest.raises(ValueError):
        EMA(model_with(0), decay=1.0)


def test_warmup_limits_early_decay():
    ema = EMA(model_with(0), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.update(model_with(1))
    assert ema.current_decay() == pytest.approx(2 / 11)


def test_state_round_trip_and_swap():
    m = model_with(2.0)
    ema = EMA(m, decay=0.5)
    ema.update(model_with(4.0))  # shadow = 3
    other = EMA(model_with(0.0), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.num_updates == 1 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    with ema.swapped_into(m):
        assert torch.allclose(m.weight, torch.full((1, 2), 3.0))
    assert torch.allclose(m.weight, torch.full((1, 2), 2.0))
    with pytest.raises(ValueError, match="does not match"):
        EMA(nn.Linear(3, 3), decay=0.5).load_state_dict(ema.state_dict())
