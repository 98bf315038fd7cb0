"""The Shapes world: procedural captioned images (renderer, caption grammar, splits).

The SD3-nano builder and teacher training live in ``shapes.nano`` / ``shapes.teacher`` and are not imported
here, so importing the world never pulls in diffusers.
"""

from .world import (
    CATEGORIES,
    COLORS,
    HELDOUT_CATEGORIES,
    HELDOUT_PAIRS,
    IMAGE_SIZE,
    REGIONS,
    RELATIONS,
    SHAPES,
    SPLITS,
    Obj,
    Placed,
    Scene,
    Spec,
    caption_for,
    draw,
    eval_prompts,
    layout,
    make_dataset,
    parse_caption,
    phrasings,
    relative_position,
    render,
    sample_scene,
    sample_spec,
)

__all__ = [
    "CATEGORIES",
    "COLORS",
    "HELDOUT_CATEGORIES",
    "HELDOUT_PAIRS",
    "IMAGE_SIZE",
    "REGIONS",
    "RELATIONS",
    "SHAPES",
    "SPLITS",
    "Obj",
    "Placed",
    "Scene",
    "Spec",
    "caption_for",
    "draw",
    "eval_prompts",
    "layout",
    "make_dataset",
    "parse_caption",
    "phrasings",
    "relative_position",
    "render",
    "sample_scene",
    "sample_spec",
]
