"""What the front proxy reads from disk, re-read only when a file changes (one stat per request)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from broke.errors import BrokeError

if TYPE_CHECKING:
    from broke.baselines import Speed

T = TypeVar("T")
log = logging.getLogger("broke.gateway")


class Watched(Generic[T]):
    """A file's parsed content, reloaded when its (mtime, size, inode) changes.

    A file that turns bad keeps the last good value (and logs why); with no good value yet the
    error is raised to the caller.
    """

    def __init__(self, path: Path, load: Callable[[], T], missing: Callable[[], T],
                 bad_at_start: Callable[[], T] | None = None) -> None:
        """`bad_at_start`: the value while the file is bad and no good one was seen yet (default:
        the error is raised)."""
        self.path, self._load, self._missing, self._bad_at_start = path, load, missing, bad_at_start
        self._stamp: tuple[int, int, int] | None = None
        self._last: tuple[T] | None = None  # the last good value

    def last_good(self) -> T | None:
        """The last good value read, if any (without looking at the file)."""
        return self._last[0] if self._last else None

    def get(self) -> T:
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp or self._last is None:
            try:
                value = self._load() if stamp != (0, 0, 0) else self._missing()
            except BrokeError as exc:
                if self._last is None:
                    if self._bad_at_start is None:
                        raise
                    log.error("%s is unreadable, starting without it: %s", self.path.name, exc)
                    self._last = (self._bad_at_start(),)
                else:
                    log.error("keeping the last good %s: %s", self.path.name, exc)
                self._stamp = stamp
                return self._last[0]
            self._last, self._stamp = (value,), stamp
        return self._last[0]


def watched_speeds(home: Path) -> Watched[dict[str, Speed]]:
    """This machine's measured speeds (`baselines/`), re-read when a record comes or goes.

    A bad baseline file costs the `fastest` order (logged), never a request.
    """
    from broke.baselines import baselines_dir, expected_speeds
    from broke.machine import hardware

    machine_id = hardware()["id"]  # only records of this machine count

    def load() -> dict[str, Speed]:
        try:
            return expected_speeds(home, machine_id)
        except BrokeError as exc:
            log.error("measured speeds unavailable: %s", exc)
            return {}

    return Watched(baselines_dir(home), load, dict)
