"""The headline speed-ups, measured interleaved in one process so that a slow spell of the machine hits the teacher
and the students alike.

``python -m flashdistill.bench.speedup SPEC.json OUT.json`` loads the teacher pipeline and each student's
transformer and scheduler, then runs rounds of teacher, student, student, ... calls (the students' transformers are
swapped into the one pipeline: on a GPU, three SD3.5 Medium pipelines would not fit, three transformers do) and
reports, per variant, the median seconds of the whole call and of its transformer forwards. The ratios of medians
are the speed-ups; the transformer-only ratio is the limit this device allows for the given step counts.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from .latency import Breakdown, _call_kwargs, _Clock

__all__ = ["measure_interleaved"]


def measure_interleaved(spec: dict) -> dict:
    """``spec``: ``teacher`` (folder), ``variants`` (latency specs: the first is the teacher's; the others
    unquantised student pipeline folders), ``resolution``, ``batch``, ``rounds``, ``device``, ``dtype``,
    ``prompt``."""
    import torch
    from diffusers import SD3Transformer2DModel

    from ..pipelines.folders import load_pipeline

    device = torch.device(spec.get("device", "cpu"))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    pipe = load_pipeline(spec["teacher"], dtype=dtype).to(device)
    parts = []
    for v in spec["variants"]:
        if v["model"] == spec["teacher"]:
            parts.append((pipe.transformer, pipe.scheduler))
        else:  # only what differs: the transformer and the scheduler (not a second set of text encoders and VAE)
            folder = Path(v["model"])
            net = SD3Transformer2DModel.from_pretrained(folder / "transformer", dtype=dtype).to(device).eval()
            parts.append((net, type(pipe.scheduler).from_pretrained(folder / "scheduler")))
    clock = _Clock(device)
    prompts = [spec["prompt"]] * spec["batch"]
    totals = {v["label"]: [] for v in spec["variants"]}
    transformer = {v["label"]: [] for v in spec["variants"]}
    for round_ in range(spec["rounds"] + 1):  # round 0 warms every variant up
        for v, (net, scheduler) in zip(spec["variants"], parts):
            pipe.transformer, pipe.scheduler = net, scheduler
            generator = torch.Generator(device=device).manual_seed(round_)
            kwargs = _call_kwargs(v, spec["resolution"])
            with Breakdown(pipe, clock) as b:
                total: list[float] = []
                with clock.region(total):
                    pipe(prompts, generator=generator, **kwargs)
            if round_:
                totals[v["label"]].append(total[0])
                transformer[v["label"]].append(sum(b.parts["transformer"]))
    return {"resolution": spec["resolution"], "batch": spec["batch"], "rounds": spec["rounds"],
            "seconds": {k: statistics.median(t) for k, t in totals.items()},
            "transformer_seconds": {k: statistics.median(t) for k, t in transformer.items()},
            "seconds_all": totals}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(measure_interleaved(spec), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ..cli import _quiet_torchvision_fallback

    _quiet_torchvision_fallback()
    sys.exit(main())
