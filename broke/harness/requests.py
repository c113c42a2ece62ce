"""The gateway requests of harness runs, in the records database: a run's agent and its review lanes each
use a token of their own (owner `run:ID`, `run:ID/review`), so the gateway knows whose request it serves."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from broke.records import Appender, open_records

RUN_OWNER = "run:"
REVIEW_SUFFIX = "/review"
SCHEMA = """
CREATE TABLE IF NOT EXISTS harness_requests (
    run_id TEXT NOT NULL, role TEXT NOT NULL, ts REAL NOT NULL, request_id TEXT NOT NULL, slot TEXT NOT NULL,
    backend TEXT NOT NULL, status INTEGER NOT NULL, attempts INTEGER NOT NULL, latency_ms REAL NOT NULL,
    tokens INTEGER);
CREATE INDEX IF NOT EXISTS harness_requests_run ON harness_requests (run_id);
"""
INSERT = "INSERT INTO harness_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
COLUMNS = ("role", "ts", "request_id", "slot", "backend", "status", "attempts", "latency_ms", "tokens")
#: Requests kept over every run.
KEEP = 200_000


def agent_owner(run_id: str) -> str:
    return RUN_OWNER + run_id


def review_owner(run_id: str) -> str:
    return RUN_OWNER + run_id + REVIEW_SUFFIX


def run_of(owner: str) -> tuple[str, str] | None:
    """(run id, role: agent or review) of a token owner, or None for a token that is not a run's."""
    if not owner.startswith(RUN_OWNER):
        return None
    run_id = owner[len(RUN_OWNER):]
    if run_id.endswith(REVIEW_SUFFIX):
        return run_id[:-len(REVIEW_SUFFIX)], "review"
    return run_id, "agent"


class RunRequests:
    """The gateway's side: every answered request of a run's token, appended off the request path."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.appender: Appender | None = None

    def add(self, trace: Any) -> None:
        """Record `trace` (a gateway Trace) if its token is a run's; anything else is left alone."""
        run = run_of(trace.client)
        if run is None:
            return
        if self.appender is None:
            self.appender = Appender(self.home, SCHEMA, INSERT, table="harness_requests", keep=KEEP)
        self.appender.add((run[0], run[1], trace.ts, trace.request_id, trace.slot, trace.backend, trace.status,
                           trace.attempts, trace.latency_ms, trace.tokens))


    def close(self) -> None:
        """Write what is queued (the gateway is stopping)."""
        if self.appender is not None:
            self.appender.close()


def run_requests(home: Path, run_id: str) -> list[dict[str, Any]]:
    """The requests recorded for `run_id`, oldest first."""
    with closing(open_records(home, SCHEMA)) as connection:
        rows = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM harness_requests WHERE run_id = ? "
                                  "ORDER BY ts", (run_id,)).fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]
