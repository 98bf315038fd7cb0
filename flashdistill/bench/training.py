"""The training-cost part of ``flashdistill bench``: each stage with gradient checkpointing off and on, and stage 2's
iteration against its passes timed alone (:mod:`~flashdistill.bench.passes`)."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError

__all__ = ["training_cost", "flash_data"]


def flash_data(work: Path, teacher: Path, n: int = 64) -> Path:
    """A small real-Shapes dataset encoded by the teacher (Flash Diffusion trains on real data), made once."""
    from ..data.generate import GenerateConfig
    from ..demo_report import teacher_data
    from ..shapes.prompt_file import write_images

    images = work / "flash_images"
    if not (images / "captions.jsonl").exists():
        write_images(images, n, seed=0)
    return teacher_data(GenerateConfig(out=str(work / "flash_data"), images=str(images), model=str(teacher),
                                       shard_size=n, batch_size=n))


def training_cost(plan: dict, work: Path, args) -> dict:
    from tqdm.auto import tqdm

    from .passes import stage2_pass_ratio
    from .train_cost import CONFIGS, stage_cost, stages

    data = Path(args.data)
    if not data.exists():
        raise ConfigError(f"--data {data}: no such folder (make demo writes runs/demo/data; or --skip train)")
    work.mkdir(parents=True, exist_ok=True)
    student4 = plan["students"]["4-step student"]
    iters = args.train_iters or (5 if args.quick else 10)
    teacher = plan["teacher"]
    todo = stages(teacher, data, student4, None if args.quick else Path(flash_data(work, teacher)))
    if args.quick:
        todo = [s for s in todo if "stage 2" in s.label]
    pairs = [(s, c) for s in todo for c in ((False,) if args.quick else (False, True))]
    rows = [stage_cost(stage, work, checkpointing, iters)
            for stage, checkpointing in tqdm(pairs, desc="training cost (a fresh process per stage)", unit="run")]
    ratio = stage2_pass_ratio(CONFIGS / "sd35_flash" / "nano_dmd.yaml",
                              [f"teacher={teacher}", f"data={data}", f"init_student={student4}",
                               f"out={work / 'passes' / 'student'}", f"train.run_dir={work / 'passes' / 'run'}"],
                              iters=-(-iters // 5) * 5)
    return {"stages": rows, "stage2_passes": ratio}
