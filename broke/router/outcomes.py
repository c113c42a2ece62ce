"""Outcome records of routed requests in the home's records database (`broke.records`), and feedback on them.

Table `router_outcomes`: one row per request the `auto` router decided (written by the gateway's
`OutcomeLog`): its id (the answer's `x-broke-request-id`), time, client, slot, tier, backend,
p_strong (as decided, and the shipped prior's), latency, tokens, status, the prompt's embedding
(never its text) and the feedback given.
Bounded to KEEP rows, the oldest going first.

Feedback on a request (`broke feedback`, the gateway's feedback endpoint) is stored on its row and,
when the request went to the basic or balanced tier, becomes a label (`labels`): good says the weaker
model sufficed (target 0), bad that the strong one was needed (target 1). On premium the strong model
answered, so good or bad says nothing about whether the weaker one would have done: kept, not learned.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from broke.errors import InvalidInputError, NotFoundError
from broke.paths import FILE_MODE
from broke.records import open_records

SCHEMA = """
CREATE TABLE IF NOT EXISTS router_outcomes (
    request_id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    client TEXT NOT NULL,
    slot TEXT NOT NULL,
    tier TEXT NOT NULL,
    backend TEXT NOT NULL,
    p_strong REAL,
    prior REAL,
    latency_ms REAL,
    tokens INTEGER,
    status INTEGER NOT NULL,
    vector BLOB,
    feedback TEXT
);
"""
INSERT = ("INSERT OR REPLACE INTO router_outcomes (request_id, time, client, slot, tier, backend, p_strong, prior, "
          "latency_ms, tokens, status, vector, feedback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)")
TABLE = "router_outcomes"
#: Outcome records kept at most.
KEEP = 50_000
VERDICTS = {"good": 0.0, "bad": 1.0}
#: Tiers whose feedback teaches the router (see the module docstring).
LEARNING_TIERS = ("basic", "balanced")
FIELDS = ("request_id", "time", "client", "slot", "tier", "backend", "p_strong", "latency_ms", "tokens", "status",
          "feedback")


def rows(home: Path, limit: int | None = None) -> Iterator[dict]:
    """Outcome records, newest first (every one, or the newest `limit`), without their vectors."""
    connection = open_records(home, SCHEMA)
    try:
        cursor = connection.execute(f"SELECT {', '.join(FIELDS)} FROM {TABLE} ORDER BY rowid DESC LIMIT ?",
                                    (-1 if limit is None else limit,))
        for row in cursor:
            yield dict(zip(FIELDS, row, strict=True))
    finally:
        connection.close()


def priors(home: Path, limit: int = 5000) -> tuple[list[float], np.ndarray]:
    """The shipped prior's p_strong and the embedding of the newest `limit` recorded requests that have both."""
    connection = open_records(home, SCHEMA)
    try:
        found = connection.execute(f"SELECT prior, vector FROM {TABLE} WHERE prior IS NOT NULL AND vector IS NOT NULL "
                                   "ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    finally:
        connection.close()
    sizes = {len(v) for _, v in found}
    if len(sizes) > 1:  # made with other token vectors: keep the newest kind
        found = [(p, v) for p, v in found if len(v) == len(found[0][1])]
    vectors = np.frombuffer(b"".join(v for _, v in found), dtype=np.float32).reshape(len(found), -1) if found \
        else np.zeros((0, 0), dtype=np.float32)
    return [float(p) for p, _ in found], vectors


def count(home: Path) -> int:
    connection = open_records(home, SCHEMA)
    try:
        return int(connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
    finally:
        connection.close()


def export(home: Path, path: Path) -> int:
    """Write every outcome record (oldest first, no vectors) to `path` (0600) as JSON lines; returns how many."""
    records = list(rows(home))[::-1]
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror}") from None
    return len(records)


def forget(home: Path) -> int:
    """Delete every outcome record (labels learned from feedback stay: `broke router forget` drops those)."""
    connection = open_records(home, SCHEMA)
    try:
        return int(connection.execute(f"DELETE FROM {TABLE}").rowcount)
    finally:
        connection.close()


def give_feedback(home: Path, request_id: str, verdict: str, client: str | None = None) -> bool:
    """Record good|bad on a routed request (only the client that made it, when `client` is given) and,
    on a learning tier, store it as a label. Returns whether the router learns from it.
    Raises InvalidInputError for another verdict, NotFoundError for a request not in the records."""
    from broke.router.labels import Label, add

    if verdict not in VERDICTS:
        raise InvalidInputError(f"feedback is good or bad, not '{verdict}'")
    connection = open_records(home, SCHEMA)
    try:
        found = connection.execute(f"SELECT client, tier, vector, prior FROM {TABLE} WHERE request_id = ?",
                                   (request_id,)).fetchone()
        if found is None or (client is not None and found[0] != client):
            raise NotFoundError(f"no routed request '{request_id}' in the outcome records "
                                "(`broke router outcomes` lists them)")
        connection.execute(f"UPDATE {TABLE} SET feedback = ? WHERE request_id = ?", (verdict, request_id))
    except sqlite3.Error as exc:
        raise InvalidInputError(f"feedback not recorded: {exc}") from None
    finally:
        connection.close()
    _, tier, vector, prior = found
    if tier not in LEARNING_TIERS or not vector or prior is None:
        return False
    add(home, [Label(f"request:{request_id}", request_id, "feedback", VERDICTS[verdict], prior, 1.0,
                     np.frombuffer(vector, dtype=np.float32))])
    return True
