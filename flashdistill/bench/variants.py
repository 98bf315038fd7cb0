"""The variants ``flashdistill bench`` measures: the teacher at 50 CFG steps and at its own 4-step Euler, and each
student as fp32, int8, int8-dynamic and int6, with and without T5 (written by ``flashdistill export``)."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import ConfigError
from ..pipelines.folders import guidance_of, read_run_settings

__all__ = ["Variant", "teacher_variants", "student_variants", "QUANT_SCHEMES"]

QUANT_SCHEMES = (None, "int8", "int8-dynamic", "int6")  # None: the student as trained (fp32 on SD3-nano)


@dataclass
class Variant:
    """One row of the latency table: a pipeline folder and how to call it."""

    label: str
    model: str
    role: str  # "teacher" | "student"
    num_steps: int
    guidance: float
    max_sequence_length: int
    steps: int | None = None  # num_inference_steps (teachers)
    sigmas: list[float] | None = None  # the student's own sigmas
    quantize: str | None = None
    t5: bool = True
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)

    def spec(self) -> dict:
        return asdict(self)


def teacher_variants(teacher: Path, steps: tuple[int, ...] = (50, 4)) -> list[Variant]:
    """The teacher with its own CFG scale at each step count (diffusers' default shifted sigmas)."""
    settings = read_run_settings(teacher)
    cfg = guidance_of(settings)
    return [Variant(f"teacher {n} steps, CFG {cfg:g}", str(teacher), "teacher", n, cfg,
                    settings.get("max_sequence_length", 256), steps=n) for n in steps]


def student_variants(student: Path, name: str, work: Path, schemes=QUANT_SCHEMES, t5_options=(True, False),
                     rebuild: bool = True) -> list[Variant]:
    """``student`` as trained plus every (scheme, T5) export of it under ``work/name_<scheme>[_no_t5]``."""
    from ..deploy.export import export_folder

    settings = read_run_settings(student)
    if "sigmas" not in settings:
        raise ConfigError(f"{student}: no sigmas in its flashdistill.json; give a distilled student folder")
    sigmas = list(settings["sigmas"])
    out = []
    for scheme in schemes:
        for t5 in t5_options:
            folder = student
            if scheme is not None or not t5:
                slug = name.replace(" ", "_").replace("-", "")
                folder = work / f"{slug}_{scheme or 'fp32'}{'' if t5 else '_no_t5'}"
                if folder.exists() and rebuild:
                    shutil.rmtree(folder)
                if not folder.exists():
                    export_folder(student, folder, no_t5=not t5, quantize=scheme)
            label = f"{name} {scheme or 'fp32'}{'' if t5 else ', no T5'}"
            out.append(Variant(label, str(folder), "student", len(sigmas), guidance_of(settings),
                               settings.get("max_sequence_length", 256), sigmas=sigmas, quantize=scheme, t5=t5))
    return out
