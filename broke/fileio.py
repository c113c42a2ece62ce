"""Crash-safe file writes and TOML reads whose errors name the file and line."""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from broke.errors import StateFileError
from broke.paths import FILE_MODE, ensure_dir

_HEADER = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


#: A temporary file of atomic_write older than this was left by a writer that was killed: removed.
ORPHAN_AGE_S = 10.0


def _temp_name(path: Path) -> re.Pattern[str]:
    """The names atomic_write gives `path`'s temporary files (tempfile.mkstemp: 8 random characters)."""
    return re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")


def remove_orphan_temps(path: Path, min_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the temporary files of `path` that a killed writer left (only atomic_write's own names, and
    only those untouched for `min_age_s`, so a live writer's file stays); returns what was removed."""
    import time

    pattern, now, removed = _temp_name(path), time.time(), []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > min_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old or the new file, never a half one (mode 0600); first
    remove the temporary files of `path` that killed writers left."""
    import tempfile

    ensure_dir(path.parent)
    remove_orphan_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; return (data, text). Errors name the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StateFileError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise StateFileError(f"{path}: invalid TOML: {exc}") from None


def _split_key(key: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', key)
    return tuple(next(p for p in groups if p) for groups in parts)


def locate_line(text: str, path: tuple[str, ...]) -> int:
    """The 1-based line that defines key `path` (or its nearest enclosing table); 1 if unknown."""
    best_line, best_len = 1, 0
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            full = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            full = table + _split_key(key.group(1))
        common = 0
        for mine, wanted in zip(full, path, strict=False):  # the common prefix of keys of any lengths
            if mine != wanted:
                break
            common += 1
        if common == len(full) and common > best_len:
            best_line, best_len = number, common
    return best_line


def framed(body: str, first: str, last: str) -> bytes:
    """A TOML document between broke's first line and its end line, so that a cut copy can be told apart."""
    return f"{first}\n{body}{last}\n".encode()


def is_cut(text: str, first: str, last: str) -> bool:
    """Whether a file broke framed (it starts with `first`'s opening words) lost its end line. A file
    without the first line (written by hand, or by an older broke) is never cut."""
    return text.startswith(first[:18]) and last not in text.splitlines()
