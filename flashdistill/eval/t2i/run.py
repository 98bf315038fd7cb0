"""``flashdistill eval --metrics fid,clip ...``: judge any text-to-image model (a teacher, a student, a LoRA on its
base, an export) or a folder of images, as the papers do.

Images are generated with our batch-invariant sampler (:func:`flashdistill.pipelines.generate.generate_images`: the
starting noise of prompt sample ``i`` depends only on ``(seed set, i)`` and never equals a training noise), written
as PNGs, and read back for the metrics, so an interrupted run resumes where it stopped: images on disk are not made
again, and a changed model or setting is refused by name (``eval_settings.json``). ``--layout geneval`` writes
``<index>/metadata.jsonl`` + ``<index>/samples/<n>.png`` per prompt, the layout GenEval's own scorer reads.
Outputs in ``--out``: ``results.md``, ``results.json``, ``grid.png`` (first prompts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ...config import ConfigError
from .prompts import read_eval_prompts

__all__ = ["add_generic_args", "run_generic", "image_path", "check_no_generic_flags"]

SETTINGS = "eval_settings.json"


def add_generic_args(parser) -> None:
    g = parser.add_argument_group("any text-to-image model (--metrics)")
    g.add_argument("--config", default=None, help="a YAML of these settings (configs/eval/coco_fid_clip.yaml)")
    g.add_argument("--metrics", default=None, help="comma list of fid, clip, pickscore: judge with these instead of "
                   "ShapesEval")
    g.add_argument("--prompts", default=None, help="prompt file: one per line, COCO captions JSON, or GenEval jsonl")
    g.add_argument("--out", default=None, help="run folder: images, eval_settings.json, results.md/.json, grid.png")
    g.add_argument("--reference", default=None, help="FID: folder of reference images (e.g. COCO val)")
    g.add_argument("--fid-inception", default=None, help="FID: local InceptionV3 weights (torch-fidelity format)")
    g.add_argument("--fid-features", default=None, help="FID: or a TorchScript feature network, uint8 NCHW -> (N, D)")
    g.add_argument("--fid-resize", type=int, default=None, help="FID: resize images to this side first")
    g.add_argument("--clip-model", default=None, help="CLIP score: local transformers CLIP folder (ViT-B/32, ...)")
    g.add_argument("--pickscore-model", default=None, help="PickScore: local PickScore_v1 CLIP folder + processor")
    g.add_argument("--batch-size", type=int, default=16, help="images per generation batch")
    g.add_argument("--resolution", type=int, default=None, help="image side (default: the model folder's)")
    g.add_argument("--samples-per-prompt", type=int, default=1, help="images per prompt and seed set (GenEval: 4)")
    g.add_argument("--layout", choices=["flat", "geneval"], default="flat", help="how images are written")
    g.add_argument("--limit", type=int, default=None, help="only the first N prompts")


def image_path(root: Path, layout: str, seed: int, k: int, j: int, spp: int) -> Path:
    if layout == "geneval":
        return root / "images" / f"seed{seed}" / f"{k:05d}" / "samples" / f"{j:04d}.png"
    return root / "images" / f"seed{seed}" / f"{k * spp + j:06d}.png"


def _check_args(args, metrics: list[str]) -> None:
    unknown = [m for m in metrics if m not in ("fid", "clip", "pickscore")]
    if unknown or not metrics:
        raise ConfigError(f"--metrics {args.metrics}: choose from fid, clip, pickscore")
    if "pickscore" in metrics and not args.pickscore_model:
        raise ConfigError("--metrics pickscore needs --pickscore-model <local PickScore_v1 folder>")
    if "fid" in metrics and not args.reference:
        raise ConfigError("--metrics fid needs --reference <folder of reference images>")
    if "clip" in metrics and not args.clip_model:
        raise ConfigError("--metrics clip needs --clip-model <local CLIP folder>")
    if args.n_per_category != 16:
        raise ConfigError("--n-per-category: a ShapesEval setting; with --metrics the prompts come from --prompts")
    if not args.out:
        raise ConfigError("--metrics: give --out, the run folder for images and results")
    for flag, value in (("--batch-size", args.batch_size), ("--samples-per-prompt", args.samples_per_prompt)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: give at least 1")


def _metrics(args, metrics: list[str], device):
    from .clip_score import CLIPScore, PickScore
    from .fid import FID

    out = []
    if "fid" in metrics:
        out.append(FID(args.reference, args.fid_inception, args.fid_features, device, resize=args.fid_resize))
    if "clip" in metrics:
        out.append(CLIPScore(args.clip_model, device))
    if "pickscore" in metrics:
        out.append(PickScore(args.pickscore_model, device))
    return out


def _check_settings(root: Path, settings: dict) -> None:
    path = root / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if changed:
            k = changed[0]
            raise ConfigError(f"{root}: its images were made with {k} = {old.get(k)!r}, now {settings.get(k)!r}; "
                              "use a new --out (or delete that folder) to evaluate other settings")
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def _generate(args, prompts, seeds, root: Path) -> tuple[dict, str]:
    """Write the missing images; returns the settings that made them and the device."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ...data.teacher_data import weights_fingerprint
    from ...models.backbones import denoiser_of
    from ...pipelines.folders import resolve_model
    from ...pipelines.generate import generate_images, load_setup

    folder = resolve_model(args.model)
    setup = load_setup(folder, steps=args.steps, guidance=args.guidance, drop_t5=args.no_t5)
    if args.resolution:
        setup.resolution = args.resolution
    spp = args.samples_per_prompt
    texts = [p.text for p in prompts for _ in range(spp)]
    settings = {"model": str(Path(folder).resolve()), "weights": weights_fingerprint(setup.pipe),
                "timesteps": [round(float(t), 6) for t in setup.timesteps], "guidance_scale": setup.guidance_scale,
                "resolution": setup.resolution, "no_t5": bool(args.no_t5), "samples_per_prompt": spp,
                "layout": args.layout, "sampler": setup.sampler,
                "prompts": hashlib.sha256("\n".join(p.text for p in prompts).encode()).hexdigest()[:16]}
    _check_settings(root, settings)
    for seed in seeds:
        chunks = range(0, len(texts), args.batch_size)
        for start in tqdm(chunks, desc=f"eval images, seed set {seed}", unit="batch"):
            idx = range(start, min(len(texts), start + args.batch_size))
            paths = [image_path(root, args.layout, seed, i // spp, i % spp, spp) for i in idx]
            if all(p.is_file() for p in paths):
                continue
            images, _ = generate_images(setup, texts[start : start + len(paths)], seed=seed,
                                        batch_size=len(paths), start=start)
            for i, path, image in zip(idx, paths, images):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.png")
                Image.fromarray(image).save(tmp)
                tmp.replace(path)  # a PNG on disk is always whole: resuming trusts it
                if args.layout == "geneval":  # the prompt's GenEval metadata line beside its samples
                    meta = {k: v for k, v in prompts[i // spp].items()}
                    (path.parent.parent / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
    return settings, str(denoiser_of(setup.pipe).device)


def _read(paths) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _grid(paths, out: Path, n: int = 8) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths[:n]]
    w, h = images[0].size
    strip = Image.new("RGB", (w * len(images), h))
    for i, image in enumerate(images):
        strip.paste(image, (i * w, 0))
    strip.save(out)


def run_generic(args, parser_defaults: dict | None = None) -> int:
    from ..protocol import parse_seeds

    if args.config:
        from .config import apply_config

        apply_config(args, parser_defaults or {})
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    _check_args(args, metrics)
    root = Path(args.out)
    if args.images:  # an existing folder of images with captions.jsonl
        from ..image_folder import read_captioned_images

        if args.prompts or args.model:
            raise ConfigError("--images: the prompts come from its captions.jsonl; drop --prompts / --model")
        images, numbered = read_captioned_images(Path(args.images))
        groups = [(images, [p for _, p in numbered])]
        settings, device, paths = {"images": str(Path(args.images).resolve())}, "cpu", []
    else:
        if not args.prompts:
            raise ConfigError("--metrics with a model needs --prompts <file>")
        prompts = read_eval_prompts(args.prompts, args.limit)
        seeds = parse_seeds(args.seeds)
        settings, device = _generate(args, prompts, seeds, root)
        spp = args.samples_per_prompt
        paths = [image_path(root, args.layout, s, k, j, spp) for s in seeds for k in range(len(prompts))
                 for j in range(spp)]
        texts = [p.text for _ in seeds for p in prompts for _ in range(spp)]
        groups = [(_read(paths[i : i + 256]), texts[i : i + 256]) for i in range(0, len(paths), 256)]
    judges = _metrics(args, metrics, device)
    for images, texts in groups:
        for judge in judges:
            judge.add(images, texts)
    result = {"settings": settings, "n_images": sum(len(t) for _, t in groups)}
    for judge in judges:
        result.update(judge.result())
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (root / "results.md").write_text(_markdown(result, args) + "\n")
    if paths:
        _grid(paths, root / "grid.png")
    print(_markdown(result, args))
    return 0


def _markdown(result: dict, args) -> str:
    rows = [("images", result["n_images"])]
    if "fid" in result:
        rows.append(("FID (whole set; no interval)", f"{result['fid']:.2f} ({result['n_reference']} reference)"))
    for key, label in (("clip_score", "CLIP score"), ("pickscore", "PickScore")):
        if key in result:
            lo, hi = result[f"{key}_ci95"]
            rows.append((f"{label} [95% CI]", f"{result[key]:.2f} [{lo:.2f}, {hi:.2f}]"))
    cmd = "flashdistill eval " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                          if v not in (None, False) and k not in ("_run", "command", "json", "config")
                                          and not (k == "n_per_category" and v == 16))
    return f"`{cmd}`\n\n| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def check_no_generic_flags(args) -> None:
    """ShapesEval mode: refuse the generic flags by name (they would be ignored)."""
    flags = ("config", "prompts", "out", "reference", "fid_inception", "fid_features", "clip_model", "pickscore_model",
             "resolution", "limit")
    given = [f for f in flags if getattr(args, f, None) is not None]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')}: used with --metrics fid,clip (judging any model); "
                          "ShapesEval needs none of it")
    if args.layout == "geneval":
        raise ConfigError("--layout geneval: used with --metrics (it writes the images GenEval scores)")
    if args.samples_per_prompt != 1 or args.batch_size != 16:
        raise ConfigError("--samples-per-prompt / --batch-size: used with --metrics")
