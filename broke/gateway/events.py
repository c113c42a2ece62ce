"""The rotation log: one JSON line per key or backend state change, with a reason code.

Keys appear only as hashed references (`key_ref`), never as names' values.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from broke.paths import FILE_MODE

#: Reason codes.
RATE_LIMIT, AUTH, TIMEOUT, ERROR, MANUAL = "429", "auth", "timeout", "error", "manual"
BUSY = "busy"  # a local model's workers were all at their concurrency limit: the next candidate served


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **event: object) -> None:
        line = json.dumps({"ts": round(time.time(), 3), **event}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def read(self, limit: int = 50) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines[-limit:] if line.strip()]
