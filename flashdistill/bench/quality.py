"""What each deployment variant costs in quality: ShapesEval (train and held-out compositions) and FD under the
project's protocol (evaluation seed sets disjoint from the data, 95% intervals), and the paired difference to the
unquantised student with T5 — every variant judges the same prompts with the same noises, so the difference has a
tighter interval than the two scores have apart."""

from __future__ import annotations

from pathlib import Path

__all__ = ["variant_quality", "quality_rows"]


def quality_rows(quick: bool) -> list[tuple[str, object, bool]]:
    """(student, scheme, T5) rows judged: every 4-step variant, and the 2-step student's fp32/int8/int6."""
    if quick:
        return [("4-step student", None, True), ("4-step student", "int6", True)]
    four = [("4-step student", s, True) for s in (None, "int8", "int8-dynamic", "int6")]
    four += [("4-step student", None, False), ("4-step student", "int6", False)]
    return four + [("2-step student", s, True) for s in (None, "int8", "int6")]


def variant_quality(plan: dict, work: Path, args) -> dict:
    from tqdm.auto import tqdm

    from ..eval.model_eval import evaluate_seeds
    from ..eval.protocol import paired_difference, parse_seeds, summary_row
    from .variants import student_variants

    seeds = parse_seeds(args.seeds or ("1,2" if args.quick else "1,2,3,4"))
    n = args.n_per_category or (2 if args.quick else 16)
    rows, base = {}, {}
    for student, scheme, t5 in tqdm(quality_rows(args.quick), desc="quality per variant", unit="variant"):
        (variant,) = student_variants(plan["students"][student], student, work, schemes=(scheme,),
                                      t5_options=(t5,), rebuild=False)
        result = evaluate_seeds(variant.model, seeds, n)
        result.pop("images")
        row = summary_row(result)
        if scheme is None and t5:
            base[student] = result
        ref = base.get(student)
        if ref is not None and ref is not result:
            for split, key in (("train", "vs_fp32"), ("heldout", "heldout_vs_fp32")):
                mean, lo, hi = paired_difference(result[split]["cells"], ref[split]["cells"])
                row[key] = {"mean": mean, "ci95": [lo, hi]}
        rows[variant.label] = row
    return {"seeds": seeds, "n_per_category": n, "rows": rows}
