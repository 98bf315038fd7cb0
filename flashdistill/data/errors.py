"""The error type of the data layer: its message names the file, line or item that is wrong."""

from __future__ import annotations

__all__ = ["DataError", "SettingsMismatch"]


class DataError(ValueError):
    """Bad input data (empty prompt, unreadable image, mismatched shape, incomplete dataset...)."""


class SettingsMismatch(DataError):
    """A folder being resumed was started with other settings (or another teacher's weights)."""
