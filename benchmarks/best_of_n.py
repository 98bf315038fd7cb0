"""Best-of-N teacher data: keep, per prompt, the first of its N teacher samples that the Shapes judge passes.

    .venv/bin/python benchmarks/best_of_n.py --data <generate-data folder, N samples per prompt> --per-prompt N
        --out <new dataset folder>

Issue 14's hypothesis 1 ("the targets are weaker than the teacher being scored"), its third reading: the student
regresses onto, and the discriminator calls real, the teacher's samples as they come, failures included. Here each
prompt keeps one sample: the first that the exact judge passes, or its first sample when none does, so the new
dataset has as many samples as prompts, like a one-sample-per-prompt dataset of the same prompts, and differs from
it only in which noise (and so which teacher sample) each prompt gets. On SD3.5 Medium the judge would be a
detector or a VQA model; here it is the Shapes world's exact one. The folder's ``best_of.json`` records the
teacher's pass rate and the selected set's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def judge(ds, model: str, batch: int = 64) -> list[bool]:
    """Per-sample verdicts of the Shapes judge on the decoded final latents of a cached dataset."""
    from flashdistill.eval.shapes_eval import ShapesEval
    from flashdistill.models.vae import LatentCodec, to_uint8
    from flashdistill.pipelines.folders import load_pipeline, resolve_model

    codec = LatentCodec(load_pipeline(resolve_model(model)).vae)
    judge_, verdicts = ShapesEval(), []
    for a in range(0, len(ds), batch):
        idx = range(a, min(len(ds), a + batch))
        latents = torch.stack([ds[i]["latents"] for i in idx])
        with torch.no_grad():
            images = to_uint8(codec.decode(latents))
        verdicts += judge_.score_captions(images, [ds.prompts[i] for i in idx])["correct"]
    return verdicts


def select(prompts: list[str], verdicts: list[bool], per_prompt: int) -> list[int]:
    """For each consecutive group of ``per_prompt`` samples of one prompt: its first passing sample, else its first."""
    if len(prompts) % per_prompt:
        raise SystemExit(f"{len(prompts)} samples are not groups of {per_prompt}")
    chosen = []
    for g in range(0, len(prompts), per_prompt):
        group = range(g, g + per_prompt)
        if len({prompts[i] for i in group}) != 1:
            raise SystemExit(f"samples {g}..{g + per_prompt - 1} are not one prompt's: is --per-prompt right?")
        chosen.append(next((i for i in group if verdicts[i]), g))
    return chosen


def write(ds, out: Path, chosen: list[int], stats: dict) -> None:
    from flashdistill.data.cache import write_sharded

    rows: dict[str, list[torch.Tensor]] = {}
    for s, path in enumerate(ds.shards):
        tensors = load_file(str(path))
        lo = ds.starts[s]
        keep = [i - lo for i in chosen if lo <= i < lo + len(tensors["index"])]
        for name, value in tensors.items():
            if name != "index":
                rows.setdefault(name, []).append(value[keep])
    table = {name: torch.cat(parts) for name, parts in rows.items()}
    prompts = [ds.prompts[i] for i in chosen]
    meta = {**ds.meta, "num_samples": len(chosen), "best_of": stats}
    if out.exists():
        shutil.rmtree(out)
    write_sharded(out, len(chosen), 256, lambda a, b: ({k: v[a:b] for k, v in table.items()}, prompts[a:b]),
                  meta=meta)
    if (ds.root / "null.safetensors").is_file():
        shutil.copy2(ds.root / "null.safetensors", out / "null.safetensors")
    (out / "best_of.json").write_text(json.dumps(stats, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="generate-data folder, N samples per prompt")
    parser.add_argument("--per-prompt", type=int, required=True, help="N, the samples per prompt it holds")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="sd3-nano", help="the teacher whose VAE decodes the latents")
    args = parser.parse_args(argv)
    from flashdistill.data.cache import LatentDataset

    ds = LatentDataset(args.data)  # opened once: judged, then its chosen rows copied
    verdicts, prompts = judge(ds, args.model), ds.prompts
    chosen = select(prompts, verdicts, args.per_prompt)
    first = list(range(0, len(prompts), args.per_prompt))
    stats = {"source": str(args.data), "per_prompt": args.per_prompt, "prompts": len(chosen),
             "teacher_pass_rate": sum(verdicts) / len(verdicts),
             "first_sample_pass_rate": sum(verdicts[i] for i in first) / len(first),
             "selected_pass_rate": sum(verdicts[i] for i in chosen) / len(chosen)}
    write(ds, args.out, chosen, stats)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
