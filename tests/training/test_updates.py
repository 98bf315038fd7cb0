"""Update mechanics on one process: gradient accumulation equivalence, non-finite guard, frozen helper,
gradient-checkpointing pass-through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flashdistill.training import (
    AccelerateConfig,
    ModelSlot,
    NonFiniteError,
    NonFiniteGuard,
    OptimConfig,
    backward,
    build_adamw,
    build_schedule,
    enable_gradient_checkpointing,
    frozen,
    make_accelerator,
    optimizer_step,
)


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator(AccelerateConfig(cpu=True))


def make_slot(accelerator, seed=0, max_grad_norm=None, lr=0.05) -> ModelSlot:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    cfg = OptimConfig(lr=lr, max_grad_norm=max_grad_norm)
    opt = build_adamw(net.parameters(), cfg)
    sched = build_schedule(opt, cfg, max_steps=100)
    model, opt = accelerator.prepare(net, opt)
    return ModelSlot("net", model, accelerator.unwrap_model(model), opt, sched, max_grad_norm)


def data(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, x.sum(1, keepdim=True).sin()


def mse(slot, x, y):
    return {"mse": (slot.model(x) - y).pow(2).mean()}


@pytest.mark.parametrize("max_grad_norm", [None, 0.1])
def test_accumulating_two_halves_equals_one_full_batch(accelerator, max_grad_norm):
    full = make_slot(accelerator, max_grad_norm=max_grad_norm)
    accum = make_slot(accelerator, max_grad_norm=max_grad_norm)
    guard = NonFiniteGuard()
    for step in range(3):
        x, y = data(seed=step)
        backward(accelerator, full, mse(full, x, y))
        optimizer_step(accelerator, full, guard, step)
        for i, (xs, ys) in enumerate(zip(x.chunk(2), y.chunk(2))):
            backward(accelerator, accum, mse(accum, xs, ys), scale=0.5, sync=i == 1)
        optimizer_step(accelerator, accum, guard, step)
    for (name, a), b in zip(full.module.named_parameters(), accum.module.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
        assert not torch.equal(a, make_slot(accelerator).module.get_parameter(name))  # it did train


def test_nan_loss_skips_update_reports_and_stops(accelerator, caplog):
    slot, guard = make_slot(accelerator), NonFiniteGuard(max_in_a_row=3)
    x, y = data()
    before = [p.detach().clone() for p in slot.module.parameters()]
    with caplog.at_level("WARNING"):
        for step in (7, 8):
            terms = mse(slot, x, y)
            backward(accelerator, slot, {"mse": terms["mse"], "dmd": terms["mse"] * float("nan")})
            logs = optimizer_step(accelerator, slot, guard, step)
            assert logs["skipped/net"] == 1.0
    assert "step 8: non-finite loss term(s) dmd while updating 'net'" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(before, slot.module.parameters()))
    assert all(p.grad is None for p in slot.module.parameters()) and slot.updates == 0
    backward(accelerator, slot, mse(slot, x, y))  # a good update resets the streak
    assert optimizer_step(accelerator, slot, guard, 9)["skipped/net"] == 0.0 and guard.in_a_row["net"] == 0
    with pytest.raises(NonFiniteError, match=r"3 non-finite updates in a row for 'net' \(last at step 12: loss"):
        for step in (10, 11, 12):
            backward(accelerator, slot, {"mse": mse(slot, x, y)["mse"] * float("inf")})
            optimizer_step(accelerator, slot, guard, step)


def test_nonfinite_gradient_with_finite_loss_is_caught(accelerator, caplog):
    slot, guard = make_slot(accelerator), NonFiniteGuard()
    x, y = data()
    handle = slot.module[0].weight.register_hook(lambda g: g * float("inf"))
    before = slot.module[0].weight.detach().clone()
    backward(accelerator, slot, mse(slot, x, y))
    with caplog.at_level("WARNING"):
        assert optimizer_step(accelerator, slot, guard, 3)["skipped/net"] == 1.0
    handle.remove()
    assert "non-finite gradient" in caplog.text and torch.equal(before, slot.module[0].weight)


def test_step_without_backward_and_bad_terms_are_errors(accelerator):
    slot = make_slot(accelerator)
    with pytest.raises(RuntimeError, match="no backward"):
        optimizer_step(accelerator, slot, NonFiniteGuard(), 0)
    x, y = data()
    with pytest.raises(ValueError, match="must be a scalar"):
        backward(accelerator, slot, {"mse": (slot.model(x) - y).pow(2)})


def test_frozen_restores_flags():
    net = nn.Linear(2, 2)
    net.bias.requires_grad_(False)
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert net.weight.requires_grad and not net.bias.requires_grad


def test_gradient_checkpointing_pass_through():
    class Checkpointable(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(2, 2)
            self.calls = 0

        def enable_gradient_checkpointing(self):
            self.calls += 1

    class Adapter(nn.Module):  # like SD3Adapter: the switch lives on a submodule
        def __init__(self):
            super().__init__()
            self.transformer = Checkpointable()
            self.head = nn.Linear(2, 2)

    adapter = Adapter()
    assert enable_gradient_checkpointing(adapter) == 1 and adapter.transformer.calls == 1
    with pytest.raises(ValueError, match="Linear has no submodule supporting gradient checkpointing"):
        enable_gradient_checkpointing(nn.Linear(2, 2))
