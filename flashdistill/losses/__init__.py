"""Losses: one concept per file, each a small callable returning per-sample values plus logs
(:class:`flashdistill.types.LossOutput`). Pure torch; no diffusers or accelerate. Losses accumulate in at
least fp32 (bf16/fp16 inputs are promoted; fp64 stays fp64, for the maths tests)."""

from .adversarial import ADV_KINDS, DiscriminatorAdvLoss, GeneratorAdvLoss
from .distillation import DistillationLoss, k_grid_paths, k_grid_solution
from .dmd import DMDLoss, dmd_gradient, dmd_normaliser, renoised_point
from .flow_matching import FlowMatchingLoss
from .gram import GramLoss, gram_matrix
from .perceptual import DecodedDistance, feature_compare
from .trajectory import TrajectoryLoss, teacher_segment

__all__ = [
    "ADV_KINDS",
    "DecodedDistance",
    "feature_compare",
    "DMDLoss",
    "DiscriminatorAdvLoss",
    "DistillationLoss",
    "k_grid_paths",
    "k_grid_solution",
    "FlowMatchingLoss",
    "GeneratorAdvLoss",
    "GramLoss",
    "TrajectoryLoss",
    "dmd_gradient",
    "dmd_normaliser",
    "gram_matrix",
    "renoised_point",
    "teacher_segment",
]
