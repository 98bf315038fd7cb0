"""The one error type of the data layer: its message names the file, line or item that is wrong."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data (empty prompt, unreadable image, mismatched shape, incomplete dataset...)."""
