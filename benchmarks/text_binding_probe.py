"""Do a text encoder's output tokens carry their own attributes? A linear probe of a shape noun's colour.

    .venv/bin/python benchmarks/text_binding_probe.py [FOLDER ...]     (default: unet-nano and pixart-nano's T5)

Two-object prompts ("a red circle and a blue square", four templates, every ordered pair of colours and shapes:
1,440 prompts) are encoded exactly as each stock pipeline encodes them (``encode_prompt``); the output vector at
each shape noun's token is taken, and a linear classifier (trained on 70% of the prompts, scored on the rest)
predicts that noun's colour. A cross-attention denoiser (UNet, PixArt-α) reads these vectors as they are: when
the noun's token does not carry its colour, binding colours to shapes is left to the attention alone. Chance is
1/6. A PixArt teacher folder uses its own T5 (SD3-nano's, or one trained with ``train_text_encoder``).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys

import torch

COLOURS = ["red", "green", "blue", "yellow", "purple", "cyan"]
SHAPES = ["circle", "square", "triangle", "cross"]
TEMPLATES = ["a {} {} and a {} {}", "a photo of a {} {} with a {} {}", "a picture of both a {} {} and a {} {}",
             "an image of a {} {} with a {} {}"]


def prompts() -> list[tuple[str, str, str, str, str]]:
    rows = [(t.format(c1, s1, c2, s2), s1, c1, s2, c2) for t in TEMPLATES
            for c1, c2 in itertools.permutations(COLOURS, 2) for s1, s2 in itertools.permutations(SHAPES, 2)]
    random.Random(0).shuffle(rows)
    return rows


def noun_vectors(folder: str, rows) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(text encoder class, noun vectors, their colours)``."""
    from diffusers import DiffusionPipeline

    from flashdistill.shapes.vp_teacher import VPTeacherConfig, encode_prompts

    pipe = DiffusionPipeline.from_pretrained(folder)
    xs, ys = [], []
    with torch.no_grad():
        for i in range(0, len(rows), 256):
            batch = rows[i:i + 256]
            embeds, _ = encode_prompts(pipe, [r[0] for r in batch], VPTeacherConfig.max_sequence_length)
            for j, (text, s1, c1, s2, c2) in enumerate(batch):
                words = [t.replace("</w>", "").lstrip("▁") for t in
                         pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer(text).input_ids)]
                first, second = words.index(s1), len(words) - 1 - words[::-1].index(s2)
                xs += [embeds[j, first], embeds[j, second]]
                ys += [COLOURS.index(c1), COLOURS.index(c2)]
    return type(pipe.text_encoder).__name__, torch.stack(xs).float(), torch.tensor(ys)


def probe(x: torch.Tensor, y: torch.Tensor, train_fraction: float = 0.7) -> tuple[float, float]:
    """(held-out accuracy, training accuracy) of a linear classifier on standardised vectors."""
    n = int(train_fraction * len(y))
    x = (x - x[:n].mean(0)) / (x[:n].std(0) + 1e-6)
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[1], len(COLOURS))
    opt = torch.optim.Adam(lin.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(500):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x[:n]), y[:n]).backward()
        opt.step()
    with torch.no_grad():
        return ((lin(x[n:]).argmax(1) == y[n:]).float().mean().item(),
                (lin(x[:n]).argmax(1) == y[:n]).float().mean().item())


def main() -> int:
    from flashdistill.pipelines.folders import resolve_model

    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="*", default=["unet-nano", "pixart-nano"])
    args = ap.parse_args()
    rows = prompts()
    print(f"{len(rows)} prompts, {2 * len(rows)} noun tokens; chance {1 / len(COLOURS):.3f}\n")
    print("| teacher | text encoder | noun -> its colour, held-out | training |\n|---|---|---|---|")
    for folder in args.folders:
        kind, x, y = noun_vectors(str(resolve_model(folder)), rows)
        held, train = probe(x, y)
        print(f"| `{folder}` | {kind} | {held:.3f} | {train:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
