"""Judges for the miniature world: ShapesEval (GenEval-style prompt alignment from a deterministic detector)
and FD / precision / recall / diversity in the feature space of a network trained on real Shapes images."""

from .detector import Detection, Detector
from .fd import (
    FDJudge,
    FeatureNet,
    diversity,
    frechet_distance,
    load_feature_net,
    precision_recall,
    reference_images,
    train_feature_net,
)
from .shapes_eval import ShapesEval, as_uint8_images, check, scene_detections, summarize

__all__ = [
    "Detection",
    "Detector",
    "FDJudge",
    "FeatureNet",
    "ShapesEval",
    "as_uint8_images",
    "check",
    "diversity",
    "frechet_distance",
    "load_feature_net",
    "precision_recall",
    "reference_images",
    "scene_detections",
    "summarize",
    "train_feature_net",
]
