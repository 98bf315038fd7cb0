"""What both demos share (:mod:`flashdistill.demo`, :mod:`flashdistill.demo_flash`): their teacher data, the
evaluation of their rows under the protocol, and the report with its comparison grid."""

from __future__ import annotations

from pathlib import Path

__all__ = ["teacher_data", "grid_columns", "comparison_grid", "evaluate_rows", "reference_rows", "write_report"]


def reference_rows(teacher: Path, steps: int, scale: float) -> dict:
    """The teacher's many-step reference row of a demo table (none for ``--reference-steps 0``)."""
    from .config import ConfigError

    if steps < 0:
        raise ConfigError(f"--reference-steps {steps}: give a number of steps, or 0 to leave the row out")
    return {f"teacher, {steps} steps, CFG {scale:g}": (teacher, steps, None)} if steps else {}


def teacher_data(cfg) -> Path:
    """``generate`` into the demo's own data folder. A folder written with other settings or by another teacher (an
    earlier demo, a shipped teacher since replaced) is regenerated, not refused: the demo owns it."""
    import shutil

    from .data.errors import SettingsMismatch
    from .data.generate import generate

    try:
        return generate(cfg)
    except SettingsMismatch as err:
        print(f"== {err}\n== regenerating it")
        shutil.rmtree(cfg.out)
        return generate(cfg)


def grid_columns(count: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``count`` images: the evaluation set is ordered by category, so every
    category shows (the first ``n`` would all be single objects)."""
    import numpy as np

    return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))


def comparison_grid(rows: dict[str, object], path: Path, n: int = 8) -> Path:
    """One row per setting (label at the left), ``n`` images each (``grid_columns``), upscaled 3x."""
    import numpy as np
    from PIL import Image, ImageDraw

    from .eval.plots import label_font

    scale, font = 3, label_font()
    first = next(iter(rows.values()))
    h, w = first.shape[1] * scale, first.shape[2] * scale
    columns = grid_columns(len(first), n)
    label_w = 8 + max(150, *(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(k, font=font)) for k in rows))
    canvas = Image.new("RGB", (label_w + len(columns) * w, len(rows) * h), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows.items()):
        draw.text((4, r * h + h // 2 - 7), label, fill="black", font=font)
        for c, i in enumerate(columns):
            tile = Image.fromarray(np.asarray(images[i])).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_w + c * w, r * h))
    canvas.save(path)
    return path


def evaluate_rows(settings: dict, seeds, n_per_category: int) -> tuple[dict, dict]:
    """``{label: (folder, steps, guidance)}`` -> ``(results, pictures)`` under the evaluation protocol."""
    from .eval.model_eval import evaluate_seeds

    results, pictures = {}, {}
    for label, (folder, steps, guidance) in settings.items():
        res = evaluate_seeds(folder, seeds, n_per_category, steps=steps, guidance=guidance)
        pictures[label] = res.pop("images")
        results[label] = res
    return results, pictures


def write_report(out: Path, title: str, results: dict, pictures: dict, seeds, n_per_category: int,
                 command: str) -> Path:
    """``report.md``, ``comparison.png`` and ``results.json`` of a demo; prints the table."""
    from .eval.model_eval import scores_json
    from .eval.protocol import format_fd, format_score
    from .shapes import eval_prompts

    lines = ["| setting | ShapesEval (train) [95% CI] | ShapesEval (held-out) [95% CI] | FD [95% CI] | ms / image |",
             "|---|---|---|---|---|"]
    for label, res in results.items():
        tr = res["train"]
        lines.append(f"| {label} | {format_score(tr)} | {format_score(res['heldout'])} | {format_fd(tr)} | "
                     f"{res['seconds_per_image'] * 1000:.1f} |")
    n_train = results[next(iter(results))]["train"]["n_prompts"]
    table = "\n".join(lines)
    grid = comparison_grid(pictures, out / "comparison.png")
    train_prompts = [p for p, _ in eval_prompts(n_per_category, seed=seeds[0])]
    columns = "\n".join(f"{c + 1}. {train_prompts[i]}" for c, i in enumerate(grid_columns(len(train_prompts), 8)))
    report = out / "report.md"
    report.write_text(f"# {title}\n\nMeans over evaluation seed sets {seeds} "
                      f"({n_train} train prompts; noises never those of the training data) with 95% bootstrap "
                      f"intervals (FD: Student-t over the sets).\n\n{table}\n\n![comparison](comparison.png)\n\n"
                      f"Same prompts and seeds in every row; the columns' prompts (seed set {seeds[0]}):\n\n"
                      f"{columns}\n\nRegenerate: `{command}`.\n")
    (out / "results.json").write_text(scores_json(results))
    print("\n" + table)
    print(f"\nreport: {report}  pictures: {grid}")
    return report
