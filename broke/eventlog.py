"""The rotation log (`run/rotation.log`): one JSON line per key or backend state change, with its
reason code (broke.health's transitions write it)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from broke.paths import FILE_MODE, ensure_dir


class EventLog:
    """The rotation log: one JSON line per key or backend state change, with a reason code.

    Keys appear only as hashed references (`key_ref`), never as their values.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **event: object) -> None:
        line = json.dumps({"ts": round(time.time(), 3), **event}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def read(self, limit: int = 50) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines[-limit:] if line.strip()]


def rotation_log(home: Path) -> EventLog:
    """The rotation log of a broke home (`run/rotation.log`)."""
    return EventLog(ensure_dir(home / "run") / "rotation.log")
