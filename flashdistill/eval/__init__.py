"""Judges for the miniature world: ShapesEval (GenEval-style prompt alignment from a deterministic detector)
and FD / precision / recall / diversity in the feature space of a network trained on real Shapes images.

Names are imported lazily, so ``python -m flashdistill.eval.fd`` and light users do not load every module.
"""

from importlib import import_module

_WHERE = {
    "Detection": "detector",
    "Detector": "detector",
    "ShapesEval": "shapes_eval",
    "as_uint8_images": "shapes_eval",
    "check": "shapes_eval",
    "scene_detections": "shapes_eval",
    "summarize": "shapes_eval",
    "FDJudge": "fd",
    "FeatureNet": "fd",
    "diversity": "fd",
    "frechet_distance": "fd",
    "load_feature_net": "fd",
    "precision_recall": "fd",
    "reference_images": "fd",
    "train_feature_net": "fd",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
