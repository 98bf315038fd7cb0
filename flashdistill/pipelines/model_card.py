"""``README.md`` model cards for student folders, in the Hugging Face format (YAML front matter + markdown), so that
uploading a folder gives a usable page: what it was distilled from and how, its sampling settings, a sample image,
the licence field of its teacher, the diffusers code that runs it, and the evaluation table once one was run.

The card is written from the folder's ``flashdistill.json`` (the single record of its settings); ``flashdistill
eval`` replaces the section between the ``EVAL_BEGIN``/``EVAL_END`` markers.
"""

from __future__ import annotations

import re
from pathlib import Path

from .folders import read_run_settings

__all__ = ["write_model_card", "update_eval_section", "teacher_licence", "CARD_FILE", "SAMPLE_FILE"]

CARD_FILE = "README.md"
SAMPLE_FILE = "sample.png"
EVAL_BEGIN, EVAL_END = "<!-- flashdistill:eval -->", "<!-- /flashdistill:eval -->"
SAMPLE_PROMPTS = ("a red circle left of a blue square", "two green triangles", "a yellow cross above a cyan circle",
                  "three magenta squares")
DEVICE = '"cuda" if torch.cuda.is_available() else "cpu"'
PAPERS = {"sd35_flash": "SD3.5-Flash (arXiv 2509.21318)", "flash_diffusion": "Flash Diffusion (arXiv 2406.02347)"}


def teacher_licence(base: str | Path | None) -> str:
    """The ``license:`` of the teacher folder's own model card; the shipped SD3-nano is the project's (Apache-2.0);
    ``other`` when the teacher says nothing (then its terms apply: see its page)."""
    if base in (None, "sd3-nano", "tiny"):
        return "apache-2.0"
    card = Path(base) / CARD_FILE
    if card.is_file():
        match = re.search(r"^---\n(.*?)\n---", card.read_text(errors="replace"), re.S)
        if match:
            found = re.search(r"^license:\s*(\S+)", match.group(1), re.M)
            if found:
                return found.group(1).strip("'\"")
    return "other"


def _code(folder_name: str, info: dict) -> str:
    """The diffusers lines that run this folder with its own settings."""
    call = (f'pipe("{SAMPLE_PROMPTS[0]}", sigmas={info.get("sigmas")}, '
            f'guidance_scale={info.get("guidance_scale", 1.0)}, '
            f'max_sequence_length={info.get("max_sequence_length", 256)}).images[0]')
    export = info.get("export") or {}
    if info.get("kind") == "lora":
        from .stock import lora_code

        return lora_code(folder_name, {"scheduler": {"shift": 1.0}, **info}, SAMPLE_PROMPTS[0], DEVICE)
    kwargs = []
    lines = ["import torch", "from diffusers import StableDiffusion3Pipeline"]
    if export.get("no_t5"):
        kwargs.append("text_encoder_3=None, tokenizer_3=None")
    if export.get("quantize") == "int6":
        lines.append("from flashdistill.pipelines.quantized import load_int6_transformer  # our packed 6-bit format")
        kwargs.append(f'transformer=load_int6_transformer("{folder_name}/transformer")')
    kwargs.append("dtype=torch.float32" if export.get("quantize") else "dtype=torch.bfloat16")
    lines += [f'pipe = StableDiffusion3Pipeline.from_pretrained("{folder_name}", {", ".join(kwargs)}).to({DEVICE})',
              f"image = {call}"]
    return "\n".join(lines)


def _table(info: dict) -> list[str]:
    grid = ("timesteps", info["timesteps"]) if "timesteps" in info else ("sigmas", info.get("sigmas"))
    rows = [("steps", info.get("num_inference_steps", len(info.get("sigmas") or []) or "–")),
            grid, ("guidance scale", info.get("guidance_scale", 1.0)),
            ("resolution", info.get("resolution", "the base model's"))]
    if info.get("backbone", "sd3") in ("sd3", "pixart"):  # the families with a T5 encoder
        rows.append(("T5 tokens (max_sequence_length)", info.get("max_sequence_length", 256)))
    if info.get("sampler"):
        rows.append(("sampler", info["sampler"] + (f" ({info['scheduler_class']})" if info.get("scheduler_class")
                                                   else "")))
    export = info.get("export") or {}
    if export:
        rows += [("T5 text encoder", "dropped (zeros in its slice)" if export.get("no_t5") else "kept"),
                 ("transformer weights", export.get("quantize") or "unquantised"),
                 ("transformer bytes vs the student", f"{export.get('transformer_bytes_ratio', 1.0):.3f}×")]
    if info.get("parameters"):
        p = info["parameters"]
        rows.append(("trainable parameters", f"{p.get('trainable', '?'):,} of {p.get('total', '?'):,}"
                     if isinstance(p, dict) else p))
    return ["| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def write_model_card(folder: str | Path, pipe=None, eval_table: str | None = None, name: str | None = None) -> Path:
    """Write ``folder/README.md`` from its ``flashdistill.json``; with ``pipe`` (the student, loaded) also render
    ``sample.png`` from :data:`SAMPLE_PROMPTS` with the student's own settings and a fixed generator. ``name``: the
    folder name the card's code uses (default: ``folder``'s own)."""
    folder = Path(folder)
    name = name or folder.name
    info = read_run_settings(folder)
    base = info.get("base") or info.get("teacher") or (info.get("export") or {}).get("source")
    recipe = info.get("recipe", "flash_diffusion" if info.get("kind") == "lora" else "sd35_flash")
    steps = info.get("num_inference_steps") or len(info.get("sigmas") or [])
    if pipe is not None:
        _render_sample(pipe, info, folder / SAMPLE_FILE)
    front = ["---", "library_name: diffusers", "pipeline_tag: text-to-image",
             f"license: {teacher_licence(info.get('teacher') or info.get('base'))}"]
    if base:
        front.append(f"base_model: {base}")
    front += ["tags:", "  - flashdistill", f"  - {recipe.replace('_', '-')}", "  - few-step", "  - distillation", "---"]
    title = f"# {name}: a {steps}-step student" + (f" of `{base}`" if base else "")
    stage = f", stage `{info['stage']}`" if info.get("stage") else ""
    body = [title, "", f"Distilled with flashdistill by the {PAPERS.get(recipe, recipe)} recipe{stage}"
            f". Run it with its own {'timesteps' if 'timesteps' in info else 'sigmas'} and without classifier-free "
            "guidance:", "", "```python",
            _code(name, info), "```", "", *_table(info)]
    if (folder / SAMPLE_FILE).is_file():
        body += ["", f"![samples]({SAMPLE_FILE})", "", "Prompts: " + "; ".join(SAMPLE_PROMPTS) + "."]
    body += ["", EVAL_BEGIN, eval_table or "Not evaluated yet: `flashdistill eval --model <this folder>` adds a table "
             "here.", EVAL_END, "", "The licence field is the teacher's; the teacher's terms apply to this student "
             "as a derivative of it."]
    path = folder / CARD_FILE
    path.write_text("\n".join(front + [""] + body) + "\n")
    return path


def update_eval_section(folder: str | Path, table: str) -> bool:
    """Replace the evaluation section of a card written by :func:`write_model_card`; ``False`` if there is none."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return False
    text = path.read_text()
    if EVAL_BEGIN not in text or EVAL_END not in text:
        return False
    head, rest = text.split(EVAL_BEGIN, 1)
    path.write_text(head + EVAL_BEGIN + "\n" + table.strip() + "\n" + EVAL_END + rest.split(EVAL_END, 1)[1])
    return True


def _render_sample(pipe, info: dict, path: Path) -> None:
    import torch
    from PIL import Image

    from .stock import family_of, stock_call_kwargs

    kwargs = stock_call_kwargs({"guidance_scale": 1.0, **info}, family_of(pipe))
    device = getattr(pipe, "device", torch.device("cpu"))
    generator = torch.Generator(device=device).manual_seed(0)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # a stochastic scheduler draws from the global RNG: isolate it
        torch.manual_seed(0)
        images = pipe(list(SAMPLE_PROMPTS), generator=generator, **kwargs).images
    w, h = images[0].size
    strip = Image.new("RGB", (w * len(images), h))
    for i, image in enumerate(images):
        strip.paste(image.convert("RGB"), (i * w, 0))
    strip.save(path)
