"""The error types of the data layer (defined in :mod:`flashdistill.errors`, re-exported here)."""

from __future__ import annotations

from ..errors import DataError, SettingsMismatch

__all__ = ["DataError", "SettingsMismatch"]
