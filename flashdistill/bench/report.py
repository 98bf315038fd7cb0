"""``flashdistill bench`` results as markdown, JSON and a latency bar chart (PIL only, like ``eval/plots.py``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["write_results", "latency_chart"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _latency_table(out: dict) -> list[str]:
    settings = [(r, b) for r in out["resolutions"] for b in out["batches"]]
    head = ("| variant | NFE | " + " | ".join(f"{r} px, b{b}" for r, b in settings)
            + " | transformer file MiB | peak RSS MiB (+ load) |")
    lines = [head, "|" + "---|" * (len(settings) + 4)]
    for row in out["latency"]:
        nfe = row["num_steps"] * (2 if row["guidance"] > 1 else 1)
        cells = {(s["resolution"], s["batch"]): _ms(s["seconds_per_image"]) for s in row["settings"]}
        mem = f"{row['rss_peak_mb']:.0f} (+{row['rss_loaded_mb'] - row['rss_baseline_mb']:.0f})"
        if any("cuda_peak_mb" in s for s in row["settings"]):
            mem += " / CUDA " + ", ".join(f"{s['cuda_peak_mb']:.0f}" for s in row["settings"])
        lines.append(f"| {row['label']} | {nfe} | " + " | ".join(cells.get(k, "–") for k in settings)
                     + f" | {row.get('transformer_mb', float('nan')):.2f} | {mem} |")
    return lines


def _breakdown_table(out: dict) -> list[str]:
    lines = ["| variant | batch | total ms | text encoding | transformer (calls) | VAE decode | rest (pipeline "
             "overhead) |", "|---|---|---|---|---|---|---|"]
    for row in out["latency"]:
        for s in row["settings"]:
            b = s.get("breakdown")
            if not b:
                continue
            share = {k: b[k] / b["total"] for k in ("text_encoding", "transformer", "vae_decode", "rest")}
            cell = {k: f"{_ms(b[k])} ({share[k]:.0%})" for k in share}
            lines.append(f"| {row['label']} | {s['batch']} | {_ms(b['total'])} | {cell['text_encoding']} | "
                         f"{_ms(b['transformer'])} ({share['transformer']:.0%}, {b['transformer_calls']:.0f}) | "
                         f"{cell['vae_decode']} | {cell['rest']} |")
    return lines


def _quality_table(q: dict) -> list[str]:
    from ..eval.protocol import format_fd, format_score

    lines = ["| variant | ShapesEval [95% CI] | − fp32, paired [95% CI] | held-out [95% CI] | FD [95% CI] |",
             "|---|---|---|---|---|"]
    for label, r in q["rows"].items():
        diff = r.get("vs_fp32")
        d = f"{diff['mean']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff else "(reference)"
        held = format_score({"shapes_eval": r["heldout"], "ci95": r["heldout_ci95"]}) if "heldout" in r else "–"
        lines.append(f"| {label} | {format_score(r)} | {d} | {held} | {format_fd(r)} |")
    return lines


def _training_tables(t: dict) -> list[str]:
    lines = ["| stage | gradient checkpointing | s / iteration | peak RSS MiB |", "|---|---|---|---|"]
    for r in t["stages"]:
        mem = f"{r['peak_rss_mb']:.0f}" + (f" (CUDA {r['cuda_peak_mb']:.0f})" if r.get("cuda_peak_mb") else "")
        lines.append(f"| {r['stage']} | {'on' if r['gradient_checkpointing'] else 'off'} | "
                     f"{r['seconds_per_iteration']:.3f} | {mem} |")
    p = t["stage2_passes"]
    lines += ["", f"Stage 2, {p['iterations']} iterations recorded: **{p['seconds_per_iteration']:.3f} s** per "
              f"iteration against **{p['passes_alone_seconds']:.3f} s** for the same network passes (transformers and "
              f"discriminator heads) timed alone: ratio **{p['ratio']:.2f}×** (target ≤ 1.2×).", "",
              "| network | batch | autograd | input grad | weight grad | blocks run | calls / iteration | "
              "s each alone |",
              "|---|---|---|---|---|---|---|---|"]
    for c in p["passes"]:
        lines.append(f"| {c.get('network', 'transformer')} | {c['batch']} | {c['grad']} | {c['input_grad']} | "
                     f"{c['weight_grad']} | {c['blocks']} | {c['per_iteration']:.1f} | {c['seconds']:.4f} |")
    return lines


def _paper_table(m: dict) -> list[str]:
    lines = [f"Parameters of {m['model']}: " + ", ".join(f"{k} {v / 1e6:,.0f}M" for k, v in m["params"].items()), "",
             "| pipeline | weights GiB (ours, from parameter counts) | paper's peak GiB (Tab. 2, 1024 px) |",
             "|---|---|---|"]
    for k, v in m["estimates"].items():
        lines.append(f"| {k} | {v['weights_gib']:.2f} | {v['paper_peak_gib']:.2f} |")
    return lines


def _limit_sentence(s: dict) -> str:
    lim = s.get("transformer_time_limit")
    if not lim:
        return ""
    return (f" On this device the transformer time alone allows {lim.get('student_4', float('nan')):.1f}× and "
            f"{lim.get('student_2', float('nan')):.1f}× (the teacher's transformer seconds over the student's, "
            "measured in this run: a CFG call on a doubled batch costs less than two calls).")


def latency_chart(out: dict, path: Path, size: tuple[int, int] = (760, 0)) -> Path:
    """Horizontal bars (log scale) of ms per image at the trained resolution, batch 1, one per variant."""
    from PIL import Image, ImageDraw

    from ..eval.plots import label_font

    res, batch = out["trained_resolution"], min(out["batches"])
    bars = []
    for row in out["latency"]:
        for s in row["settings"]:
            if s["resolution"] == res and s["batch"] == batch:
                bars.append((row["label"], s["seconds_per_image"] * 1000))
    w = size[0]
    h = 40 + 22 * len(bars)
    img = Image.new("RGB", (w, h), "white")
    draw, font = ImageDraw.Draw(img), label_font()
    draw.text((10, 8), f"ms per image, {res} px, batch {batch} (log scale)", fill="black", font=font)
    lo = math.log10(min(v for _, v in bars)) - 0.3
    hi = math.log10(max(v for _, v in bars)) + 0.1
    left, right = 250, w - 70
    for i, (label, ms) in enumerate(bars):
        y = 32 + 22 * i
        frac = (math.log10(ms) - lo) / (hi - lo)
        colour = (214, 39, 40) if label.startswith("teacher") else (31, 119, 180)
        draw.text((10, y + 1), label[:38], fill="black", font=font)
        draw.rectangle([left, y, left + frac * (right - left), y + 16], fill=colour)
        draw.text((left + frac * (right - left) + 4, y + 1), f"{ms:.1f}", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def portable(obj, root: Path | None = None):
    """``obj`` with every string path under ``root`` (default: the working directory) made relative to it, so that
    committed results name ``flashdistill/assets/sd3-nano``, not one machine's checkout."""
    return _strip(obj, str((root or Path.cwd()).resolve()) + "/")


def _strip(obj, prefix: str):
    if isinstance(obj, str):
        return obj.replace(prefix, "")
    if isinstance(obj, dict):
        return {k: _strip(v, prefix) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strip(v, prefix) for v in obj]
    return obj


def write_results(out: dict, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = portable(out)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    json_path.write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# flashdistill bench ({'quick' if out['quick'] else 'full'})", "",
             f"Regenerate: `{out['command']}` ({out['minutes']:.0f} min on this machine"
             f"{' after resuming a stopped run' if out.get('resumed') else ''}: {out['machine']}, "
             f"{out['threads']} threads, torch {out['torch']}, diffusers {out['diffusers']}, device {out['device']}). "
             f"Teacher `{out['teacher']}`; students " + ", ".join(f"`{v}`" for v in out["students"].values()) + "."]
    paths = [json_path, md_path]
    if "latency" in out:
        s = out["speedup"]
        chart = latency_chart(out, folder / f"{name}_latency.png")
        paths.append(chart)
        lines += ["", "## Latency per image (ms, median of "
                  f"{out['repeats']} calls after one warm-up; stock `pipe(...)`, prompt to PIL images)", "",
                  f"End to end at {s['resolution']} px, batch {s['batch']} (medians of {s.get('rounds', '?')} rounds "
                  "of teacher and students called in turn in one process): the 4-step student is "
                  f"**{s['student_4_vs_teacher_50']:.1f}×** faster than the 50-step CFG teacher (NFE limit 25×), the "
                  f"2-step student **{s['student_2_vs_teacher_50']:.1f}×** (limit 50×)."
                  + _limit_sentence(s), "",
                  *_latency_table(out), "", f"![latency]({chart.name})", "",
                  "## Where the 4-step student's time goes (fp32, trained resolution)", "", *_breakdown_table(out)]
    if "quality" in out:
        q = out["quality"]
        lines += ["", f"## Quality per variant (seed sets {q['seeds']}, {q['n_per_category']} prompts per category "
                  "and set)", "", *_quality_table(q)]
    if "training" in out:
        lines += ["", "## Training cost on this device", "", *_training_tables(out["training"])]
    if "memory_on_paper" in out:
        lines += ["", "## Memory on paper (weights only; the paper's peaks add activations and the CUDA context)", "",
                  *_paper_table(out["memory_on_paper"])]
    md_path.write_text("\n".join(lines) + "\n")
    return paths
