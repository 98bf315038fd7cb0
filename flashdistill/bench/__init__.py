"""``flashdistill bench``: deployment and training measurements side by side in one run (:mod:`.run`)."""

from .run import PARTS, add_args, run

__all__ = ["add_args", "run", "PARTS"]
