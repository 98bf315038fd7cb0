"""Is a training iteration its network passes and nothing more? The ratio of an iteration's time to the time of the
same network passes run alone.

:class:`PassRecorder` records, while a real recipe runs, every ``SD3Transformer2DModel`` call and every call of the
discriminator heads: which model, the input shapes, whether autograd was on, whether the input and the weights
required gradients, and how many blocks ran (feature taps stop a forward early). :func:`replay_cost` then times
each distinct call alone on random inputs of the same shapes — a forward, plus a backward where the real call could
receive gradients — and adds them up per iteration. Everything else an iteration does (losses, optimiser steps,
random draws, data, logging, Python) is what the ratio exposes: 1.0 is no waste.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import NamedTuple

import torch

__all__ = ["Call", "PassRecorder", "replay_cost", "stage2_pass_ratio"]


class Call(NamedTuple):
    """One recorded network call: enough to replay it alone."""

    model: int  # id() of the module
    kind: str  # "transformer" | "heads"
    shapes: tuple  # input shapes: (x, text tokens, pooled) or one per head's features
    dtype: str
    grad: bool  # autograd on
    input_grad: bool  # the input required gradients (a backward reaches it)
    weight_grad: bool  # some weight required gradients
    blocks: int  # transformer blocks run (a feature tap stops early); 0 for heads


class PassRecorder:
    """Context manager: records every SD3 transformer call and every discriminator-heads call (class-level
    ``forward`` wrappers) and the wall time at which each training step's metrics row is written
    (``Progress.write``), on one clock."""

    def __init__(self):
        self.calls: list[tuple[float, Call]] = []  # (time.time() at the call, call)
        self.steps: dict[int, float] = {}  # step -> time.time() when its metrics row was written
        self.models: dict[int, torch.nn.Module] = {}
        self._blocks: dict[int, int] = {}
        self._handles: list = []
        self._restore: list = []

    def _patch(self, cls, name: str, wrapper) -> None:
        self._restore.append((cls, name, getattr(cls, name)))
        setattr(cls, name, wrapper(getattr(cls, name)))

    def __enter__(self) -> PassRecorder:
        from diffusers import SD3Transformer2DModel

        from ..models.disc import MultiHeadDisc
        from ..training.progress import Progress

        recorder = self

        def transformer(forward):
            def wrapped(model, *args, **kwargs):
                key = recorder._register(model)
                recorder._blocks[key] = 0
                x = kwargs.get("hidden_states", args[0] if args else None)
                shapes = (tuple(x.shape), tuple(kwargs["encoder_hidden_states"].shape),
                          tuple(kwargs["pooled_projections"].shape))
                start = time.time()
                try:
                    return forward(model, *args, **kwargs)
                finally:
                    recorder._record(start, model, "transformer", shapes, x, recorder._blocks[key])
            return wrapped

        def heads(forward):
            def wrapped(model, features):
                recorder._register(model)
                start = time.time()
                try:
                    return forward(model, features)
                finally:
                    recorder._record(start, model, "heads", tuple(tuple(f.shape) for f in features), features[0], 0)
            return wrapped

        def write(original):
            def wrapped(progress, step, values):
                recorder.steps[int(step)] = time.time()
                return original(progress, step, values)
            return wrapped

        self._patch(SD3Transformer2DModel, "forward", transformer)
        self._patch(MultiHeadDisc, "forward", heads)
        self._patch(Progress, "write", write)
        return self

    def _register(self, model) -> int:
        key = id(model)
        if key not in self.models:
            self.models[key] = model
            for block in getattr(model, "transformer_blocks", []):
                self._handles.append(block.register_forward_pre_hook(lambda *_a, k=key: self._count(k)))
        return key

    def _record(self, start: float, model, kind: str, shapes: tuple, x: torch.Tensor, blocks: int) -> None:
        call = Call(id(model), kind, shapes, str(x.dtype), torch.is_grad_enabled(), bool(x.requires_grad),
                    any(p.requires_grad for p in model.parameters()), blocks)
        self.calls.append((start, call))

    def _count(self, key: int) -> None:
        self._blocks[key] += 1

    def __exit__(self, *exc) -> None:
        for cls, name, original in reversed(self._restore):
            setattr(cls, name, original)
        self._restore.clear()
        for handle in self._handles:
            handle.remove()

    def window(self, first: int, last: int) -> tuple[float, Counter]:
        """Seconds per iteration over steps ``first+1 .. last`` and the calls made in them (counted)."""
        t0, t1 = self.steps[first], self.steps[last]
        calls = Counter(call for when, call in self.calls if t0 < when <= t1)
        return (t1 - t0) / (last - first), calls


def _replay_once(model, call: Call, device) -> None:
    from ..models.taps import FeatureTap

    dtype = getattr(torch, call.dtype.removeprefix("torch."))
    needs_input_grad = call.input_grad and call.grad

    def rand(shape):
        return torch.randn(shape, device=device, dtype=dtype, requires_grad=needs_input_grad)

    with torch.set_grad_enabled(call.grad):
        if call.kind == "heads":
            out = torch.stack(model([rand(s) for s in call.shapes]))
        else:
            x_shape, text_shape, pooled_shape = call.shapes
            kwargs = {"hidden_states": rand(x_shape), "encoder_hidden_states": torch.randn(text_shape, device=device,
                                                                                           dtype=dtype),
                      "pooled_projections": torch.randn(pooled_shape, device=device, dtype=dtype),
                      "timestep": torch.rand(x_shape[0], device=device) * 1000, "return_dict": False}
            if call.blocks < len(model.transformer_blocks):
                with FeatureTap([model.transformer_blocks[call.blocks - 1]], lambda o: o[1],
                                stop_after_last=True) as tap:
                    model(**kwargs)
                out = tap.result()[0]
            else:
                out = model(**kwargs)[0]
        if call.grad and (call.input_grad or call.weight_grad):
            out.float().sum().backward()


def replay_cost(recorder: PassRecorder, calls: Counter, repeats: int = 3) -> dict:
    """Seconds of each distinct recorded call run alone (median of ``repeats`` after one warm-up), times its count."""
    total, rows = 0.0, []
    for call, count in calls.items():
        model = recorder.models[call.model]
        device = next(model.parameters()).device
        saved = [p.requires_grad for p in model.parameters()]
        model.requires_grad_(call.weight_grad)
        try:
            times = []
            for i in range(repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                _replay_once(model, call, device)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i:
                    times.append(time.perf_counter() - t0)
        finally:
            for p, flag in zip(model.parameters(), saved):
                p.grad = None
                p.requires_grad_(flag)
        seconds = statistics.median(times)
        total += seconds * count
        rows.append({"network": call.kind, "batch": call.shapes[0][0], "grad": call.grad,
                     "input_grad": call.input_grad, "weight_grad": call.weight_grad, "blocks": call.blocks,
                     "count": count, "seconds": seconds})
    return {"seconds": total, "calls": rows}


def stage2_pass_ratio(config, overrides: list[str], iters: int, warmup: int = 2) -> dict:
    """Run SD3.5-Flash stage 2 (``config`` + ``overrides``) for ``warmup + iters`` iterations in this process,
    recording its passes; returns seconds per iteration, the passes' seconds alone and their ratio."""
    from ..config import load_config
    from ..recipes.sd35_flash import SD35FlashConfig, run_recipe

    cfg = load_config(SD35FlashConfig, config, [*overrides, f"train.max_steps={warmup + iters}", "train.log.every=1",
                                                "train.log.progress_bar=false", "train.log.tensorboard=false",
                                                "train.overwrite=true", f"train.checkpoint.every={warmup + iters + 1}"])
    with PassRecorder() as recorder:
        run_recipe(cfg)
    per_iteration, calls = recorder.window(warmup, warmup + iters)
    replay = replay_cost(recorder, calls)
    alone = replay["seconds"] / iters
    for row in replay["calls"]:
        row["per_iteration"] = row.pop("count") / iters
    return {"seconds_per_iteration": per_iteration, "passes_alone_seconds": alone, "ratio": per_iteration / alone,
            "iterations": iters, "passes": replay["calls"]}
