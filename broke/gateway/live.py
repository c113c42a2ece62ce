"""What the front proxy reads from disk, re-read only when a file changes (one stat per request)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Generic, TypeVar

from broke.errors import BrokeError

T = TypeVar("T")
log = logging.getLogger("broke.gateway")


class Watched(Generic[T]):
    """A file's parsed content, reloaded when its (mtime, size, inode) changes.

    A file that turns bad keeps the last good value (and logs why); with no good value yet the
    error is raised to the caller.
    """

    def __init__(self, path: Path, load: Callable[[], T], missing: Callable[[], T]) -> None:
        self.path, self._load, self._missing = path, load, missing
        self._stamp: tuple[int, int, int] | None = None
        self._value: T | None = None
        self._has_value = False

    def get(self) -> T:
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp or not self._has_value:
            try:
                value = self._load() if stamp != (0, 0, 0) else self._missing()
            except BrokeError as exc:
                if not self._has_value:
                    raise
                log.error("keeping the last good %s: %s", self.path.name, exc)
                self._stamp = stamp
                return self._value  # type: ignore[return-value]
            self._value, self._stamp, self._has_value = value, stamp, True
        return self._value  # type: ignore[return-value]
