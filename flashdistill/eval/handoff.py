"""Which student step loses the prompt: the teacher samples from noise down to a hand-off time ``h``, the student
finishes from ``h`` on its own grid; ShapesEval per ``h``.

``h = 1`` is the student alone, ``h = 0`` the teacher alone (its own fine grid, with CFG). Where the score drops as
``h`` rises names the student steps that lose the prompt (layout and colour attribution are decided at high noise),
which is what to train harder (issue: the SD3.5-Flash students match their teacher, hypothesis 2). The teacher's
part uses its folder's own sampler and CFG scale on the shifted ``teacher_steps`` grid cut at ``h``; the student's
part its recorded sigmas below ``h`` (``h`` must be one of them, or 0). Same prompts and evaluation noises for every
``h``; results are means over seed sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["handoff_scores"]


@torch.no_grad()
def handoff_scores(teacher_setup, student_setup, handoffs: Sequence[float] | None = None, n_per_category: int = 8,
                   seeds: Sequence[int] = (1, 2), teacher_steps: int = 28, batch_size: int = 64) -> dict:
    """``{h: mean ShapesEval (train split) over seeds}`` plus per-category means under ``"categories"``."""
    from ..models.backbones import adapter_for, denoiser_of, text_encoder_for
    from ..models.vae import LatentCodec, to_uint8
    from ..pipelines.generate import eval_noise, scheduler_sigmas
    from ..sampling import CFG, euler_solve
    from ..shapes import eval_prompts
    from .shapes_eval import ShapesEval

    student_grid = [float(t) for t in student_setup.timesteps]
    handoffs = list(handoffs) if handoffs is not None else student_grid
    bad = [h for h in handoffs if not any(abs(h - t) < 1e-9 for t in student_grid)]
    if bad:
        raise ValueError(f"hand-off times {bad} are not on the student's grid {student_grid}")
    tpipe, spipe = teacher_setup.pipe, student_setup.pipe
    t_full = [float(t) for t in scheduler_sigmas(tpipe, teacher_steps)]
    teacher = CFG(adapter_for(tpipe), text_encoder_for(tpipe, teacher_setup.max_sequence_length).null(),
                  teacher_setup.guidance_scale)
    student = adapter_for(spipe)
    codec, device = LatentCodec(spipe.vae), denoiser_of(spipe).device
    factor = 2 ** (len(spipe.vae.config.block_out_channels) - 1)
    side = student_setup.resolution // factor
    shape = (denoiser_of(spipe).config.in_channels, side, side)
    judge = ShapesEval()
    per_h: dict[float, list[dict]] = {h: [] for h in handoffs}
    t_text = text_encoder_for(tpipe, teacher_setup.max_sequence_length)
    s_text = text_encoder_for(spipe, student_setup.max_sequence_length)
    for seed in seeds:
        prompts = eval_prompts(n_per_category, seed=seed, split="train")
        texts, specs = [p for p, _ in prompts], [s for _, s in prompts]
        starts = range(0, len(texts), batch_size)  # prompts encoded once per seed set, used for every h
        conds = [(t_text.encode(texts[a : a + batch_size]).to(device),
                  s_text.encode(texts[a : a + batch_size]).to(device)) for a in starts]
        for h in handoffs:
            images = []
            for a, (t_cond, s_cond) in zip(starts, conds):
                n = len(t_cond)
                x = torch.stack([eval_noise(a + j, seed, shape) for j in range(n)]).to(device)
                if h < 1.0:  # the teacher from noise down to h (its grid cut at h)
                    x = euler_solve(teacher, x, [t for t in t_full if t > h + 1e-9] + [h], t_cond)
                grid = [t for t in student_grid if t <= h + 1e-9]
                if len(grid) > 1:
                    x = euler_solve(student, x, grid, s_cond)
                images.append(to_uint8(codec.decode(x)))
            per_h[h].append(judge.score(np.concatenate(images), specs))
    out = {h: float(np.mean([r["overall"] for r in rs])) for h, rs in per_h.items()}
    cats = {h: {c: float(np.mean([r[c] for r in rs if c in r])) for c in rs[0]["counts"]} for h, rs in per_h.items()}
    return {"overall": out, "categories": cats, "seeds": list(seeds), "n_per_category": n_per_category}
