"""Schema migrations: MIGRATIONS[n] turns schema-n data into schema-(n+1) data."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Migration = Callable[[dict[str, Any]], dict[str, Any]]

#: Version 1 is the first released schema; a later version adds its step here.
MIGRATIONS: dict[int, Migration] = {}


def migrate(data: dict[str, Any], from_version: int, to_version: int) -> dict[str, Any]:
    """Apply each step from `from_version` up to `to_version`; KeyError if a step is missing."""
    for version in range(from_version, to_version):
        data = MIGRATIONS[version](dict(data))
        data["schema_version"] = version + 1
    return data
