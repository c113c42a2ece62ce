"""A run's append-only ledger: `runs/<id>/events.jsonl` (broke's own events) and `runs/<id>/shims/commands.jsonl`
(what the shims saw), one JSON object a line, each line written whole and fsynced, files 0600.

A crash of the client or of broke loses at most the line being written; reading skips a torn line and says so.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broke.errors import BrokeError, NotFoundError
from broke.paths import FILE_MODE, ensure_dir

RUNS_DIR = "runs"
EVENTS_FILE = "events.jsonl"
SHIMS_DIR = "shims"
COMMANDS_FILE = "commands.jsonl"
BIN_DIR = "bin"


class LedgerError(BrokeError):
    """A ledger that cannot be written."""


def new_run_id() -> str:
    """Sortable by start time, unique, short enough to type."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def runs_root(home: Path) -> Path:
    return home / RUNS_DIR


def append_line(path: Path, event: dict[str, Any]) -> None:
    """Append one event as one write, then fsync: what is in the file is on the disk."""
    line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of a ledger file and the problems met reading it (a torn or foreign line is skipped)."""
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return events, problems
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            problems.append(f"{path}:{number}: not a JSON line (torn by a crash?); skipped")
            continue
        if isinstance(event, dict):
            events.append(event)
        else:
            problems.append(f"{path}:{number}: not a JSON object; skipped")
    return events, problems


@dataclass
class Ledger:
    """One run's directory and files."""

    home: Path
    run_id: str
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = runs_root(self.home) / self.run_id

    @property
    def events_path(self) -> Path:
        return self.root / EVENTS_FILE

    @property
    def shims_dir(self) -> Path:
        """Where the shims write: the one directory of the run a sandboxed agent may write to."""
        return self.root / SHIMS_DIR

    @property
    def commands_path(self) -> Path:
        return self.shims_dir / COMMANDS_FILE

    @property
    def bin_dir(self) -> Path:
        return self.root / BIN_DIR

    def create(self) -> Ledger:
        ensure_dir(runs_root(self.home))
        for directory in (self.root, self.shims_dir, self.bin_dir):
            ensure_dir(directory)
        return self

    def append(self, kind: str, **data: Any) -> None:
        try:
            append_line(self.events_path, {"ts": round(time.time(), 3), "kind": kind, **data})
        except OSError as exc:
            raise LedgerError(f"cannot write the run's ledger {self.events_path}: {exc.strerror}") from None

    def events(self) -> tuple[list[dict[str, Any]], list[str]]:
        return read_lines(self.events_path)

    def commands(self) -> tuple[list[dict[str, Any]], list[str]]:
        return read_lines(self.commands_path)


def run_ids(home: Path) -> list[str]:
    """Every run of the home, oldest first."""
    root = runs_root(home)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / EVENTS_FILE).is_file())


def find_run(home: Path, wanted: str | None) -> Ledger:
    """The run named `wanted` (its id or a unique prefix), else the latest run."""
    ids = run_ids(home)
    if not ids:
        raise NotFoundError("no harness runs yet; start one with `broke harness run -- COMMAND`")
    if wanted is None:
        return Ledger(home, ids[-1])
    matches = [i for i in ids if i == wanted] or [i for i in ids if i.startswith(wanted)]
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise NotFoundError(f"{what} match '{wanted}'; see `broke harness list`")
    return Ledger(home, matches[0])
