"""Append-only records in one embedded database: `$BROKE_HOME/records.sqlite` (SQLite in WAL mode, 0600).

Each kind of record (the router's outcomes, the cost ledger) owns its tables and passes their schema when it
opens the database; several gateways and CLI commands on one home may use it at once. The gateway appends
through an `Appender`, whose thread does the writing so that the request path never waits on the disk.
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from broke.errors import BrokeError
from broke.paths import FILE_MODE, ensure_dir

log = logging.getLogger("broke.records")

RECORDS_FILE = "records.sqlite"
#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 5000
#: Rows an Appender writes in one transaction at most.
BATCH = 256
#: Rows an Appender holds before it drops the newest (a stuck disk never grows the gateway's memory).
BACKLOG = 10_000


class RecordsError(BrokeError):
    """The records database cannot be opened or read."""


def records_path(home: Path) -> Path:
    return home / RECORDS_FILE


def open_records(home: Path, schema: str) -> sqlite3.Connection:
    """A connection to the home's records database, with `schema` (statements using IF NOT EXISTS) applied.
    The file is created 0600; a file that is not a database is an error naming it, never replaced."""
    path = records_path(ensure_dir(home))
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(schema)
    except sqlite3.DatabaseError as exc:
        raise RecordsError(f"{path}: not a readable records database ({exc}); move it aside and broke "
                           "starts a new one") from None
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if companion.exists():
            os.chmod(companion, FILE_MODE)
    return connection


def prune(connection: sqlite3.Connection, table: str, keep: int) -> int:
    """Delete the oldest rows of `table` (by rowid) beyond the newest `keep`; returns how many went."""
    cursor = connection.execute(
        f"DELETE FROM {table} WHERE rowid <= (SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
        (keep,))
    return cursor.rowcount


#: What an Appender is given: a row, or a function making it on the writer thread (work kept off the caller's path).
Row = Sequence[object] | Callable[[], Sequence[object]]


class Appender:
    """Appends rows to one table from a background thread, in batches; `add` never blocks. `keep` bounds the
    table: past it, the oldest rows go. `linger_s`: how long the writer waits after a row arrives before it
    makes and writes the batch (so that the request that sent it has been answered first)."""

    def __init__(self, home: Path, schema: str, insert: str, *, table: str, keep: int | None = None,
                 linger_s: float = 0.0) -> None:
        self.home, self.schema, self.insert, self.table, self.keep = home, schema, insert, table, keep
        self.linger_s = linger_s
        self.items: queue.Queue[Row | threading.Event | None] = queue.Queue(BACKLOG)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=f"broke-records-{table}", daemon=True)
        self.thread.start()

    def add(self, row: Row) -> None:
        try:
            self.items.put_nowait(row)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every row added so far is written; false if that took longer than `timeout_s`."""
        done = threading.Event()
        self.items.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop."""
        self.items.put(None)
        self.thread.join(timeout_s)

    @staticmethod
    def _made(item: Row) -> list[Sequence[object]]:
        """The row itself, or the one its function makes ([] if that failed: the row is lost, the writer goes on)."""
        if not callable(item):
            return [item]
        try:
            return [item()]
        except Exception:
            log.exception("a record was not made; the others are written")
            return []

    def _run(self) -> None:
        try:
            connection = open_records(self.home, self.schema)
        except (RecordsError, OSError) as exc:
            log.error("records not written: %s", exc)
            return
        since_prune = 0
        while True:
            batch = [self.items.get()]
            if self.linger_s and batch[0] is not None and not isinstance(batch[0], threading.Event):
                time.sleep(self.linger_s)
            while len(batch) < BATCH and not self.items.empty():
                batch.append(self.items.get_nowait())
            rows = [made for item in batch if item is not None and not isinstance(item, threading.Event)
                    for made in self._made(item)]
            try:
                if rows:
                    connection.execute("BEGIN")
                    connection.executemany(self.insert, rows)
                    connection.execute("COMMIT")
                    since_prune += len(rows)
                    if self.keep is not None and since_prune >= BATCH:
                        prune(connection, self.table, self.keep)
                        since_prune = 0
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                log.error("records not written (%s); the gateway goes on", exc)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if None in batch:
                connection.close()
                return
