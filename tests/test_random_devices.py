"""Random draws are device-correct: run with the generator on the run's device, the samplers, the head refresh and
a real recipe iteration never draw on a device other than the generator's (see ``devicecheck``). On a machine with
a GPU the same checks also run on ``cuda`` for real."""

from __future__ import annotations

import pytest
import torch
from devicecheck import StrictRandomDevices

from flashdistill.models.disc import MultiHeadDisc
from flashdistill.timesteps import FlashMixture, GridSampler, LogitNormal, Uniform, student_grid

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_the_check_catches_a_factory_without_device():
    g = torch.Generator(device="cpu").manual_seed(0)
    with pytest.raises(AssertionError, match="without device"):
        with StrictRandomDevices():
            torch.randint(4, (3,), generator=g)


@pytest.mark.parametrize("device", DEVICES)
def test_samplers_and_refresh_draw_on_the_generator_device(device):
    g = torch.Generator(device=device).manual_seed(0)
    with StrictRandomDevices() as mode:
        idx = GridSampler(student_grid(4))(5, generator=g, device=device)
        mix = FlashMixture(K=16)(5, generator=g, device=device)
        uni = Uniform(0.1, 0.9)(5, generator=g, device=device)
        logit = LogitNormal()(5, generator=g, device=device)
        disc = MultiHeadDisc(8, 3, hidden=4).to(device)
        chosen = disc.refresh(1.0, g)
    assert mode.checked >= 5
    assert {t.device.type for t in (idx, mix, uni, logit)} == {torch.device(device).type}
    assert chosen == [0, 1, 2]
