"""Latency, time breakdown and peak memory of one pipeline variant, measured in a fresh process.

``python -m flashdistill.bench.latency SPEC.json OUT.json`` loads the folder named by the spec with
:func:`~flashdistill.pipelines.folders.load_pipeline` (stock ``StableDiffusion3Pipeline.from_pretrained``; T5-free,
torchao and int6 folders included) and times the stock ``pipe(...)`` call, end to end (prompt to PIL images), at
each resolution and batch size: one warm-up call, then the median of ``repeats`` calls. A fresh process per variant
is what makes its peak memory mean something: on the CPU the peak resident set (``ru_maxrss``) of this process,
next to the resident set after the imports (what every variant pays) and after loading; on CUDA
``max_memory_allocated`` per setting, and the timing uses CUDA events.

With ``breakdown`` the calls are split into text encoding (``pipe.encode_prompt``), transformer steps, VAE decode
and the rest (the pipeline's own Python: input checks, scheduler, latents, image post-processing).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["measure_variant", "Breakdown", "rss_mb", "peak_rss_mb", "widen_positions"]


def rss_mb() -> float:
    """This process's current resident set, MiB (Linux ``/proc``; the peak where that is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set so far, MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class _Clock:
    """Wall time of a region: ``perf_counter`` on the CPU, CUDA events (after a synchronise) on CUDA."""

    def __init__(self, device):
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.torch = torch

    @contextmanager
    def region(self, out: list):
        if self.cuda:
            start, end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            yield
            end.record()
            self.torch.cuda.synchronize()
            out.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            yield
            out.append(time.perf_counter() - t0)


class Breakdown:
    """Times spent in text encoding, transformer forwards and VAE decoding during ``pipe(...)`` calls."""

    def __init__(self, pipe, clock: _Clock):
        self.pipe, self.clock = pipe, clock
        self.parts: dict[str, list[float]] = {"text_encoding": [], "transformer": [], "vae_decode": []}
        self.transformer_calls = 0

    def _wrap(self, owner, name: str, key: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            with self.clock.region(self.parts[key]):
                return original(*args, **kwargs)

        setattr(owner, name, timed)  # an instance attribute: the class and other pipelines are untouched

    def __enter__(self) -> Breakdown:
        self._wrap(self.pipe, "encode_prompt", "text_encoding")
        self._wrap(self.pipe.vae, "decode", "vae_decode")
        transformer = self.pipe.transformer
        original = transformer.forward

        def forward(*args, **kwargs):
            self.transformer_calls += 1
            with self.clock.region(self.parts["transformer"]):
                return original(*args, **kwargs)

        transformer.forward = forward
        return self

    def __exit__(self, *exc) -> None:
        wrapped = ((self.pipe, "encode_prompt"), (self.pipe.vae, "decode"), (self.pipe.transformer, "forward"))
        for owner, name in wrapped:
            owner.__dict__.pop(name, None)

    def reset(self) -> None:
        for values in self.parts.values():
            values.clear()
        self.transformer_calls = 0


def widen_positions(transformer, resolution: int, vae_factor: int) -> bool:
    """Let an SD3 transformer run at ``resolution`` although its positional table is smaller (SD3-nano's covers
    32 px): the table is resized bilinearly to the needed patch grid. For timing only: the cost of a forward does
    not depend on the table's values. Returns whether it had to widen."""
    import torch

    embed = transformer.pos_embed
    grid = resolution // vae_factor // embed.patch_size
    old = embed.pos_embed_max_size
    if old is None or grid <= old:
        return False
    table = embed.pos_embed.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    table = torch.nn.functional.interpolate(table, size=(grid, grid), mode="bilinear", align_corners=False)
    embed.pos_embed = table.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(embed.pos_embed.dtype)
    embed.pos_embed_max_size = grid
    return True


def _call_kwargs(spec: dict, resolution: int) -> dict:
    kwargs = {"guidance_scale": spec["guidance"], "max_sequence_length": spec["max_sequence_length"],
              "height": resolution, "width": resolution, "output_type": "pil"}
    if spec.get("sigmas"):
        kwargs["sigmas"] = list(spec["sigmas"])
    else:
        kwargs["num_inference_steps"] = spec["steps"]
    return kwargs


def measure_variant(spec: dict) -> dict:
    """Run one variant as ``spec`` says (see the module docstring); returns its timings and memory."""
    import torch
    from diffusers import StableDiffusion3Pipeline  # noqa: F401  (imported before the baseline is read)

    from ..pipelines.folders import load_pipeline

    device = torch.device(spec.get("device", "cpu"))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    torch.manual_seed(0)
    baseline = rss_mb()
    pipe = load_pipeline(spec["model"], dtype=dtype).to(device)
    loaded = rss_mb()
    clock = _Clock(device)
    out: dict = {"label": spec["label"], "rss_baseline_mb": baseline, "rss_loaded_mb": loaded, "settings": [],
                 "widened_for": []}
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    for resolution in sorted(spec["resolutions"]):
        if widen_positions(pipe.transformer, resolution, vae_factor):
            out["widened_for"].append(resolution)
        for batch in spec["batches"]:
            prompts = [spec["prompt"]] * batch
            kwargs = _call_kwargs(spec, resolution)
            generator = torch.Generator(device=device).manual_seed(0)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            warm: list[float] = []
            for _ in range(spec["warmup"]):
                with clock.region(warm):
                    pipe(prompts, generator=generator, **kwargs)
            # a call slower than long_call seconds is timed once after its warm-up (the 50-step teacher at the
            # largest size and batch would otherwise take most of the run)
            repeats = 1 if warm and max(warm) > spec.get("long_call", 20.0) else spec["repeats"]
            times: list[float] = []
            for _ in range(repeats):
                with clock.region(times):
                    pipe(prompts, generator=generator, **kwargs)
            row = {"resolution": resolution, "batch": batch, "seconds": statistics.median(times),
                   "seconds_all": times, "seconds_per_image": statistics.median(times) / batch}
            if device.type == "cuda":
                row["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            if spec.get("breakdown") and resolution == spec["breakdown_resolution"]:
                row["breakdown"] = _breakdown(pipe, clock, prompts, kwargs, generator, spec["repeats"])
            out["settings"].append(row)
    out["rss_peak_mb"] = peak_rss_mb()
    return out


def _breakdown(pipe, clock: _Clock, prompts, kwargs, generator, repeats: int) -> dict:
    """Median over ``repeats`` calls of each part's seconds per call; ``rest`` is what no part accounts for."""
    rows = []
    with Breakdown(pipe, clock) as parts:
        for _ in range(repeats):
            parts.reset()
            total: list[float] = []
            with clock.region(total):
                pipe(prompts, generator=generator, **kwargs)
            row = {k: sum(v) for k, v in parts.parts.items()}
            row["total"] = total[0]
            row["rest"] = total[0] - sum(row[k] for k in parts.parts)
            row["transformer_calls"] = parts.transformer_calls
            rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    result = measure_variant(spec)
    Path(argv[1]).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ..cli import _quiet_torchvision_fallback

    _quiet_torchvision_fallback()
    sys.exit(main())
