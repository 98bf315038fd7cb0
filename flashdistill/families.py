"""The pipeline families flashdistill drives, by diffusers pipeline class name (standard library only, so any layer
may ask): ``"sd3"`` rectified flow; ``"unet"``, ``"sdxl"`` and ``"pixart"`` variance-preserving."""

from __future__ import annotations

__all__ = ["FAMILIES", "CLASS_OF"]

FAMILIES = {"StableDiffusion3Pipeline": "sd3", "StableDiffusionPipeline": "unet",
            "StableDiffusionXLPipeline": "sdxl", "PixArtAlphaPipeline": "pixart"}
CLASS_OF = {family: cls for cls, family in FAMILIES.items()}
