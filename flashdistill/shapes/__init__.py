"""The Shapes world: procedural captioned images (renderer, caption grammar, splits).

The SD3-nano builder and teacher training live in ``shapes.nano`` / ``shapes.teacher`` and are not imported
here, so importing the world never pulls in diffusers.
"""

from . import world as _world
from .world import *  # noqa: F403  (the world module's public names, listed once in world.__all__)

__all__ = list(_world.__all__)
