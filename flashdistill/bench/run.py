"""``flashdistill bench``: latency, time breakdown, peak memory, quality per deployment variant, training cost and
SD3.5 Medium's memory on paper, measured side by side in one run (SD3.5-Flash §4.5, Tab. 1–2).

Writes ``<out>/<name>.md``, ``.json`` and ``_latency.png``. Every figure comes from this run; ratios (speed-ups,
overhead shares, int8/int6 costs) compare numbers measured in it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import ConfigError

__all__ = ["add_args", "run", "PARTS"]

PARTS = ("latency", "quality", "train", "paper")


def _wants_breakdown(variant) -> bool:
    """Timed part by part: the 50-step teacher in fp32 and both unquantised students (with and without T5)."""
    if variant.role == "teacher":
        return variant.num_steps == 50 and variant.dtype == "float32"
    return variant.quantize is None


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="teacher pipeline folder (default: the shipped SD3-nano)")
    parser.add_argument("--student4", default="runs/demo/student_4step", help="4-step student folder (make demo)")
    parser.add_argument("--student2", default="runs/demo/student_2step", help="2-step student folder")
    parser.add_argument("--data", default="runs/demo/data", help="SD3.5-Flash teacher data for the training cost")
    parser.add_argument("--out", default="docs/results", help="folder for <name>.md/.json/_latency.png")
    parser.add_argument("--name", default="bench_nano", help="file name stem of the results")
    parser.add_argument("--work", default="runs/bench", help="scratch folder: exported variants, training runs")
    parser.add_argument("--quick", action="store_true", help="a subset for CI-sized checks (~3 min on 2 cores)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--resolutions", default=None, help="comma-separated pixel sizes (default 32,64,128; "
                        "quick: the trained one)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8; quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per setting after one warm-up "
                        "(median reported; default 3, quick 2)")
    parser.add_argument("--resume", action="store_true", help="keep what <out>/<name>.partial.json (left by a run "
                        "that stopped) measured with the same settings, and measure only the rest")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {','.join(PARTS)}")
    parser.add_argument("--seeds", default=None, help="quality: evaluation seed sets (default 1,2,3,4; quick 1,2)")
    parser.add_argument("--n-per-category", type=int, default=None, help="quality: prompts per category and seed "
                        "set (default 16; quick 2)")
    parser.add_argument("--train-iters", type=int, default=None, help="timed iterations per training stage "
                        "(default 10; quick 5)")


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text}: expected comma-separated integers") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{flag} {text}: give one or more positive integers")
    return values


def _plan(args) -> dict:
    import torch

    from ..pipelines.folders import check_pipeline_folder, read_run_settings, resolve_model

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        raise ConfigError(f"--skip {args.skip}: unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ConfigError(f"--device {device}: use cpu, or cuda on a machine with a CUDA GPU")
    teacher = resolve_model(args.model)
    check_pipeline_folder(teacher)
    students = {}
    for flag, name in (("student4", "4-step student"), ("student2", "2-step student")):
        folder = Path(getattr(args, flag))
        if not (folder / "model_index.json").exists():
            raise ConfigError(f"--{flag} {folder}: not a student pipeline folder (make demo writes "
                              "runs/demo/student_4step; docs/deployment.md gives the 2-step command)")
        students[name] = folder
    trained = int(read_run_settings(students["4-step student"]).get("resolution") or 32)
    return {"skip": skip, "device": device, "teacher": teacher, "students": students, "trained": trained,
            "resolutions": _ints(args.resolutions, "--resolutions") if args.resolutions else
            ([trained] if args.quick else [32, 64, 128]),
            "batches": _ints(args.batches, "--batches") if args.batches else ([1] if args.quick else [1, 8]),
            "repeats": args.repeats or (2 if args.quick else 3)}


def _variants(plan: dict, work: Path, quick: bool) -> list:
    from .variants import student_variants, teacher_variants

    variants = teacher_variants(plan["teacher"])
    for name, folder in plan["students"].items():
        if quick:  # the rows the quick table needs: fp32, int8, int6 and T5-free for the 4-step student
            if name.startswith("4"):
                variants += student_variants(folder, name, work, schemes=(None, "int8", "int6"), t5_options=(True,))
                variants += student_variants(folder, name, work, schemes=(None,), t5_options=(False,))
            else:
                variants += student_variants(folder, name, work, schemes=(None,), t5_options=(True,))
        else:
            variants += student_variants(folder, name, work)
    if plan["device"] == "cuda":  # the same rows in bf16 (fp32 weights cast; quantised ones dequantise to bf16)
        variants += [type(v)(**{**v.spec(), "label": v.label + ", bf16", "dtype": "bfloat16"}) for v in variants]
    return variants


def _worker(module: str, spec: dict, work: Path, what: str) -> dict:
    """Run ``python -m flashdistill.bench.<module> SPEC OUT`` in a fresh process; its JSON result."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", f"flashdistill.bench.{module}", str(spec_path), str(out_path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"bench: {what} failed:\n{proc.stderr[-1500:]}")
        return json.loads(out_path.read_text())


def _measure(variant, plan: dict, work: Path, breakdown: bool) -> dict:
    """One variant in a fresh process (:mod:`flashdistill.bench.latency`)."""
    spec = {**variant.spec(), "device": plan["device"], "resolutions": plan["resolutions"],
            "batches": plan["batches"], "warmup": 1, "repeats": plan["repeats"], "breakdown": breakdown,
            "breakdown_resolution": plan["trained"], "prompt": "two red circles left of a blue square"}
    result = _worker("latency", spec, work, f"timing {variant.label} ({variant.model})")
    from ..pipelines.quantized import weight_bytes

    return {**variant.spec(), **result, "transformer_mb": weight_bytes(Path(variant.model) / "transformer") / 2**20}


def run(args) -> int:
    t_start = time.time()
    plan = _plan(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"command": "flashdistill bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
                 "quick": args.quick, "device": plan["device"], "teacher": str(plan["teacher"]),
                 "students": {k: str(v) for k, v in plan["students"].items()}, "trained_resolution": plan["trained"],
                 "resolutions": plan["resolutions"], "batches": plan["batches"], "repeats": plan["repeats"]}
    out.update(_environment(plan["device"]))
    partial = Path(args.out) / f"{args.name}.partial.json"
    if args.resume and partial.is_file():
        out = _resumed(out, partial)
    try:
        _run_parts(args, plan, work, out)
    except BaseException:  # keep what was measured: <out>/<name>.partial.json
        Path(args.out).mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(out, indent=1) + "\n")
        print(f"bench: stopped; what was measured is in {partial} (--resume continues from it)", file=sys.stderr)
        raise
    out["minutes"] = (time.time() - t_start) / 60
    from .report import write_results

    paths = write_results(out, Path(args.out), args.name)
    partial.unlink(missing_ok=True)
    print("\n".join(f"wrote {p}" for p in paths) + f" ({out['minutes']:.1f} min)")
    if "speedup" in out:
        s = out["speedup"]
        print(f"end to end at {plan['trained']} px, batch 1: 4-step student {s['student_4_vs_teacher_50']:.1f}x, "
              f"2-step {s['student_2_vs_teacher_50']:.1f}x faster than the 50-step CFG teacher")
    return 0


SETTINGS = ("quick", "device", "teacher", "students", "resolutions", "batches", "repeats", "torch", "diffusers",
            "threads", "machine")


def _resumed(out: dict, partial: Path) -> dict:
    """``out`` with the parts a stopped run measured, refusing a partial file made with other settings."""
    try:
        old = json.loads(partial.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"--resume: {partial} is not valid JSON ({err}); delete it to start afresh") from None
    changed = [k for k in SETTINGS if old.get(k) != out.get(k)]
    if changed:
        raise ConfigError(f"--resume: {partial} was measured with other settings ({', '.join(changed)}); "
                          "delete it or run with the same ones")
    print(f"bench: resuming from {partial}: {', '.join(k for k in ('latency', 'quality', 'training') if k in old)}")
    old["resumed"] = old.get("resumed", 0) + 1
    return old


def _run_parts(args, plan: dict, work: Path, out: dict) -> None:
    from tqdm.auto import tqdm

    if "latency" not in plan["skip"]:
        variants = _variants(plan, work / "variants", args.quick)
        rows = out.setdefault("latency", [])
        done = {row["label"] for row in rows}
        for v in tqdm(variants, desc="latency (a fresh process per variant)", unit="variant"):
            if v.label in done:
                continue
            rows.append(_measure(v, plan, work, breakdown=_wants_breakdown(v)))
        out["speedup"] = _speedups(_interleaved(plan, work, args.quick))
    if "quality" not in plan["skip"] and "quality" not in out:
        from .quality import variant_quality

        out["quality"] = variant_quality(plan, work / "variants", args)
    if "train" not in plan["skip"] and "training" not in out:
        from .training import training_cost

        out["training"] = training_cost(plan, work / "train", args)
    if "paper" not in plan["skip"]:
        from .paper import folder_params, memory_estimates, sd35_medium_params

        params = sd35_medium_params() if args.model in (None, "sd3-nano") else folder_params(plan["teacher"])
        out["memory_on_paper"] = {"params": params, "estimates": memory_estimates(params),
                                  "model": "SD3.5 Medium (built-in configs)" if args.model in (None, "sd3-nano")
                                  else str(plan["teacher"])}


def _interleaved(plan: dict, work: Path, quick: bool) -> dict:
    """The teacher at 50 steps and both fp32 students timed in rounds in one process
    (:mod:`flashdistill.bench.speedup`), at the trained resolution and the smallest batch."""
    from .variants import student_variants, teacher_variants

    specs = [teacher_variants(plan["teacher"], steps=(50,))[0].spec()]
    for name, folder in plan["students"].items():  # the student as trained (no export is written for it)
        specs.append(student_variants(folder, name, work, schemes=(None,), t5_options=(True,))[0].spec())
    spec = {"teacher": str(plan["teacher"]), "variants": specs, "resolution": plan["trained"],
            "batch": min(plan["batches"]), "rounds": 3 if quick else 9, "device": plan["device"],
            "prompt": "two red circles left of a blue square"}
    return {**_worker("speedup", spec, work, "the interleaved speed-up run"), "labels": [v["label"] for v in specs]}


def _speedups(inter: dict) -> dict:
    """End-to-end speed-ups (the JSON's top-level ``speedup``): ratios of interleaved medians, plus the limit the
    transformer time alone allows on this device (a CFG call on a doubled batch need not cost two calls)."""
    teacher, four, two = inter["labels"]
    sec, tr = inter["seconds"], inter["transformer_seconds"]
    return {"student_4_vs_teacher_50": sec[teacher] / sec[four], "student_2_vs_teacher_50": sec[teacher] / sec[two],
            "resolution": inter["resolution"], "batch": inter["batch"], "rounds": inter["rounds"],
            "seconds": sec, "nfe_limit": {"student_4": 100 / 4, "student_2": 100 / 2},
            "transformer_time_limit": {"student_4": tr[teacher] / tr[four], "student_2": tr[teacher] / tr[two]}}


def _environment(device: str) -> dict:
    import platform

    import diffusers
    import torch

    env = {"torch": torch.__version__, "diffusers": diffusers.__version__, "threads": torch.get_num_threads(),
           "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    return env
