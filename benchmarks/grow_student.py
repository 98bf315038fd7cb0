"""A deeper student that starts as exactly the teacher: the capacity experiment of the SD3.5-Flash log.

    .venv/bin/python benchmarks/grow_student.py --out runs/grown_12 [--teacher sd3-nano] [--every 1]

Writes ``OUT/transformer``: the teacher's ``SD3Transformer2DModel`` with a new joint block inserted after every
``--every``-th block (never after the last, context-pre-only one). A new block's adaLN-Zero modulation (image and
context) starts at zero, so its gates are 0 and it passes both streams through unchanged: the grown model computes
the teacher's velocity (checked here on random inputs) and every new weight is free to learn. ``init_student=OUT``
starts a stage from it; the student folder it writes is a stock SD3 pipeline with the larger transformer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def grown_layout(num_layers: int, every: int) -> list[int | None]:
    """For each block of the grown model, the teacher block it copies (None: a new identity block)."""
    layout: list[int | None] = []
    for i in range(num_layers):
        layout.append(i)
        if i < num_layers - 1 and (i + 1) % every == 0:
            layout.append(None)
    return layout


def grow(teacher, every: int = 1):
    """The grown transformer (float32) of a teacher ``SD3Transformer2DModel``."""
    from diffusers import SD3Transformer2DModel

    cfg = dict(teacher.config)
    layout = grown_layout(cfg["num_layers"], every)
    dual = [layout.index(i) for i in cfg.get("dual_attention_layers") or ()]
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    grown = SD3Transformer2DModel(**{**cfg, "num_layers": len(layout), "dual_attention_layers": tuple(dual)})
    own = {k: v for k, v in teacher.state_dict().items() if not k.startswith("transformer_blocks.")}
    missing = grown.load_state_dict(own, strict=False).missing_keys
    assert all(k.startswith("transformer_blocks.") for k in missing), missing
    for pos, src in enumerate(layout):
        block = grown.transformer_blocks[pos]
        if src is not None:
            block.load_state_dict(teacher.transformer_blocks[src].state_dict())
            continue
        for norm in (block.norm1, block.norm1_context):  # adaLN-Zero: all shifts, scales and gates 0
            torch.nn.init.zeros_(norm.linear.weight)
            torch.nn.init.zeros_(norm.linear.bias)
    return grown


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="sd3-nano")
    ap.add_argument("--out", required=True)
    ap.add_argument("--every", type=int, default=1, help="insert a new block after every N-th teacher block")
    args = ap.parse_args()
    from diffusers import SD3Transformer2DModel

    from flashdistill.pipelines.folders import resolve_model

    folder = resolve_model(args.teacher)
    teacher = SD3Transformer2DModel.from_pretrained(Path(folder) / "transformer", dtype=torch.float32).eval()
    grown = grow(teacher, args.every).eval()
    g = torch.Generator().manual_seed(0)
    c = teacher.config
    x = torch.randn(2, c.in_channels, c.sample_size, c.sample_size, generator=g)
    ctx = torch.randn(2, 16, c.joint_attention_dim, generator=g)
    pooled = torch.randn(2, c.pooled_projection_dim, generator=g)
    t = torch.tensor([999.0, 250.0])
    with torch.no_grad():
        a = teacher(x, ctx, pooled, t, return_dict=False)[0]
        b = grown(x, ctx, pooled, t, return_dict=False)[0]
    err = (a - b).abs().max().item()
    if err > 1e-4:
        raise RuntimeError(f"grown model differs from the teacher by {err}")
    out = Path(args.out)
    grown.save_pretrained(out / "transformer")
    n_t, n_g = (sum(p.numel() for p in m.parameters()) for m in (teacher, grown))
    print(f"grown transformer -> {out / 'transformer'}: {len(grown.transformer_blocks)} blocks, {n_g:,} parameters "
          f"(teacher {n_t:,}); max |Δv| against the teacher {err:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
