"""Is a training iteration its network passes and nothing more? The ratio of an iteration's time to the time of the
same transformer passes run alone.

:class:`PassRecorder` records, while a real recipe runs, every ``SD3Transformer2DModel`` call: which model, the
input shapes, whether autograd was on, whether the input and the weights required gradients, and how many blocks
ran (feature taps stop a forward early). :func:`replay_cost` then times each distinct call alone on random inputs
of the same shapes — a forward, plus a backward where the real call could receive gradients — and adds them up
per iteration. Everything else an iteration does (losses, discriminator heads, optimiser steps, data, logging,
Python) is what the ratio exposes: 1.0 is no waste.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

import torch

__all__ = ["PassRecorder", "replay_cost", "stage2_pass_ratio"]


class PassRecorder:
    """Context manager: records SD3 transformer calls (class-level ``forward`` wrapper) and the wall time at which
    each training step's metrics row is written (``Progress.write``), on one clock."""

    def __init__(self):
        self.calls: list[tuple[float, tuple]] = []  # (time.time() at the call, signature)
        self.steps: dict[int, float] = {}  # step -> time.time() when its metrics row was written
        self.models: dict[int, torch.nn.Module] = {}
        self._blocks: dict[int, int] = {}
        self._handles: list = []

    def __enter__(self) -> PassRecorder:
        from diffusers import SD3Transformer2DModel

        from ..training.progress import Progress

        self._cls, self._forward = SD3Transformer2DModel, SD3Transformer2DModel.forward
        self._progress, self._write = Progress, Progress.write
        recorder = self

        def forward(model, *args, **kwargs):
            key = id(model)
            if key not in recorder.models:
                recorder.models[key] = model
                for block in model.transformer_blocks:
                    recorder._handles.append(block.register_forward_pre_hook(lambda *_a, k=key: recorder._count(k)))
            recorder._blocks[key] = 0
            x = kwargs.get("hidden_states", args[0] if args else None)
            text = kwargs["encoder_hidden_states"]
            pooled = kwargs["pooled_projections"]
            start = time.time()
            try:
                return recorder._forward(model, *args, **kwargs)
            finally:
                sig = (key, tuple(x.shape), tuple(text.shape), tuple(pooled.shape), str(x.dtype),
                       torch.is_grad_enabled(), bool(x.requires_grad),
                       any(p.requires_grad for p in model.parameters()), recorder._blocks[key])
                recorder.calls.append((start, sig))

        def write(progress, step, values):
            recorder.steps[int(step)] = time.time()
            return recorder._write(progress, step, values)

        SD3Transformer2DModel.forward = forward
        Progress.write = write
        return self

    def _count(self, key: int) -> None:
        self._blocks[key] += 1

    def __exit__(self, *exc) -> None:
        self._cls.forward = self._forward
        self._progress.write = self._write
        for handle in self._handles:
            handle.remove()

    def window(self, first: int, last: int) -> tuple[float, Counter]:
        """Seconds per iteration over steps ``first+1 .. last`` and the calls made in them (counted)."""
        t0, t1 = self.steps[first], self.steps[last]
        calls = Counter(sig for when, sig in self.calls if t0 < when <= t1)
        return (t1 - t0) / (last - first), calls


def _replay_once(model, sig, device) -> None:
    from ..models.taps import FeatureTap

    _, x_shape, text_shape, pooled_shape, dtype, grad, x_grad, w_grad, blocks = sig
    dtype = getattr(torch, dtype.removeprefix("torch."))
    x = torch.randn(x_shape, device=device, dtype=dtype, requires_grad=x_grad and grad)
    kwargs = {"hidden_states": x, "encoder_hidden_states": torch.randn(text_shape, device=device, dtype=dtype),
              "pooled_projections": torch.randn(pooled_shape, device=device, dtype=dtype),
              "timestep": torch.rand(x_shape[0], device=device) * 1000, "return_dict": False}
    with torch.set_grad_enabled(grad):
        if blocks < len(model.transformer_blocks):
            with FeatureTap([model.transformer_blocks[blocks - 1]], lambda o: o[1], stop_after_last=True) as tap:
                model(**kwargs)
            out = tap.result()[0]
        else:
            out = model(**kwargs)[0]
        if grad and (x_grad or w_grad):
            out.float().sum().backward()


def replay_cost(recorder: PassRecorder, calls: Counter, repeats: int = 3) -> dict:
    """Seconds of each distinct recorded call run alone (median of ``repeats`` after one warm-up), times its count."""
    total, rows = 0.0, []
    for sig, count in calls.items():
        model = recorder.models[sig[0]]
        device = next(model.parameters()).device
        saved = [p.requires_grad for p in model.parameters()]
        model.requires_grad_(sig[7])
        try:
            times = []
            for i in range(repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                _replay_once(model, sig, device)
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
        rows.append({"batch": sig[1][0], "grad": sig[5], "input_grad": sig[6], "weight_grad": sig[7],
                     "blocks": sig[8], "count": count, "seconds": seconds})
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
