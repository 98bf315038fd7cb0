"""The project's error types, importable from any layer. Each message names the file, key, line or value that is
wrong; the CLI prints it on one line and exits with code 2."""

from __future__ import annotations

from .config import ConfigError

__all__ = ["ConfigError", "DataError", "SettingsMismatch"]


class DataError(ValueError):
    """Bad input data (empty prompt, unreadable image, mismatched shape, incomplete dataset...)."""


class SettingsMismatch(DataError):
    """A folder being resumed was started with other settings (or another teacher's weights)."""
