"""Outcome records of routed requests in the home's records database (`broke.records`), and feedback on them.

Table `router_outcomes`: one row per request the `auto` router decided, and per request to a slot the
user chose to record too (`broke router record`; `RecordConfig`), written by the gateway's `OutcomeLog`:
its id (the answer's `x-broke-request-id`), time, client, slot, tier ("" when no router decided it),
backend, p_strong (as decided or, for another slot, as estimated) and the shipped prior's, latency,
tokens, status, the prompt's embedding and the feedback given. The prompt's text is kept only when the
user opts in (`RecordConfig.prompt_text`), in table `router_prompts`, cut at PROMPT_CHARS characters.
Both are bounded to KEEP rows, the oldest going first; a prompt goes with its outcome row.

Feedback on a request (`broke feedback`, the gateway's feedback endpoint) is stored on its row and,
when the request went to the basic or balanced tier, becomes a label (`labels`): good says the weaker
model sufficed (target 0), bad that the strong one was needed (target 1). On premium the strong model
answered, so good or bad says nothing about whether the weaker one would have done; a request to another
slot was not routed by tier at all: both are kept, not learned.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from broke.errors import InvalidInputError, NotFoundError
from broke.paths import FILE_MODE
from broke.records import open_records

#: Deleted rows (the oldest pruned, `forget`) are overwritten on disk: no prompt text stays in free pages.
SCHEMA = """
PRAGMA secure_delete=ON;
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
CREATE TABLE IF NOT EXISTS router_prompts (
    request_id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    cut INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS router_prompts_follow AFTER DELETE ON router_outcomes BEGIN
    DELETE FROM router_prompts WHERE request_id = old.request_id;
END;
"""
INSERT = ("INSERT OR REPLACE INTO router_outcomes (request_id, time, client, slot, tier, backend, p_strong, prior, "
          "latency_ms, tokens, status, vector, feedback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)")
TABLE = "router_outcomes"
PROMPTS_TABLE = "router_prompts"
PROMPT_INSERT = f"INSERT OR REPLACE INTO {PROMPTS_TABLE} (request_id, prompt, cut) VALUES (?, ?, ?)"
#: Characters of a prompt's text kept at most (the rest is cut, and the record says so).
PROMPT_CHARS = 8000
#: Outcome records kept at most.
KEEP = 50_000
VERDICTS = {"good": 0.0, "bad": 1.0}
#: Tiers whose feedback teaches the router (see the module docstring).
LEARNING_TIERS = ("basic", "balanced")
FIELDS = ("request_id", "time", "client", "slot", "tier", "backend", "p_strong", "latency_ms", "tokens", "status",
          "feedback")
#: Characters of a stored prompt `snippets` shows.
SNIPPET_CHARS = 60


@dataclass(frozen=True)
class Feedback:
    """What became of a verdict: whether the router learned from it, and if not, why not."""

    learned: bool
    why_not: str = ""


def prompt_row(text: str) -> tuple[str, int]:
    """The prompt text and cut flag a record keeps of `text`."""
    return text[:PROMPT_CHARS], int(len(text) > PROMPT_CHARS)


def rows(home: Path, limit: int | None = None) -> Iterator[dict]:
    """Outcome records, newest first (every one, or the newest `limit`), without their vectors; those that
    kept the prompt's text have it as `prompt` (and `prompt_cut`: whether it was cut at PROMPT_CHARS)."""
    columns = ", ".join(f"o.{f}" for f in FIELDS)
    with closing(open_records(home, SCHEMA)) as connection:
        cursor = connection.execute(f"SELECT {columns}, p.prompt, p.cut FROM {TABLE} o LEFT JOIN {PROMPTS_TABLE} p "
                                    "ON p.request_id = o.request_id ORDER BY o.rowid DESC LIMIT ?",
                                    (-1 if limit is None else limit,))
        for *row, prompt, cut in cursor:
            record = dict(zip(FIELDS, row, strict=True))
            if prompt is not None:
                record.update(prompt=prompt, prompt_cut=bool(cut))
            yield record


def priors(home: Path, limit: int = 5000) -> tuple[list[float], np.ndarray]:
    """The shipped prior's p_strong and the embedding of the newest `limit` requests a router decided
    (a tier) that have both."""
    with closing(open_records(home, SCHEMA)) as connection:
        found = connection.execute(f"SELECT prior, vector FROM {TABLE} WHERE prior IS NOT NULL AND vector IS NOT NULL "
                                   "AND tier != '' ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    sizes = {len(v) for _, v in found}
    if len(sizes) > 1:  # made with other token vectors: keep the newest kind
        found = [(p, v) for p, v in found if len(v) == len(found[0][1])]
    vectors = np.frombuffer(b"".join(v for _, v in found), dtype=np.float32).reshape(len(found), -1) if found \
        else np.zeros((0, 0), dtype=np.float32)
    return [float(p) for p, _ in found], vectors


def count(home: Path, table: str = TABLE) -> int:
    """How many outcome records there are (or, with PROMPTS_TABLE, how many keep their prompt's text)."""
    with closing(open_records(home, SCHEMA)) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def snippets(home: Path, request_ids: Iterable[str]) -> dict[str, str]:
    """The start of the stored prompt text of those requests that kept theirs (one line, SNIPPET_CHARS)."""
    wanted = list(dict.fromkeys(request_ids))
    if not wanted:
        return {}
    with closing(open_records(home, SCHEMA)) as connection:
        found = connection.execute(f"SELECT request_id, substr(prompt, 1, {SNIPPET_CHARS + 1}) FROM {PROMPTS_TABLE} "
                                   f"WHERE request_id IN ({', '.join('?' * len(wanted))})", wanted).fetchall()
    return {rid: _one_line(text) for rid, text in found}


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS - 1] + "…"


def export(home: Path, path: Path) -> int:
    """Write every outcome record (oldest first, no vectors; prompt text where kept) to `path` (0600) as JSON
    lines; returns how many."""
    records = list(rows(home))[::-1]
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror}") from None
    return len(records)


def forget(home: Path) -> int:
    """Delete every outcome record and every stored prompt text, overwriting the freed bytes and emptying the
    write-ahead log, so no text stays in the file (labels learned from feedback stay: `broke router forget`
    drops those). Returns how many outcome records went."""
    with closing(open_records(home, SCHEMA)) as connection:
        gone = int(connection.execute(f"DELETE FROM {TABLE}").rowcount)
        connection.execute(f"DELETE FROM {PROMPTS_TABLE}")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone


def give_feedback(home: Path, request_id: str, verdict: str, client: str | None = None) -> Feedback:
    """Record good|bad on a recorded request (only the client that made it, when `client` is given) and,
    on a learning tier, store it as a label.
    Raises InvalidInputError for another verdict, NotFoundError for a request not in the records."""
    from broke.router.labels import Label, add

    if verdict not in VERDICTS:
        raise InvalidInputError(f"feedback is good or bad, not '{verdict}'")
    connection = open_records(home, SCHEMA)
    try:
        found = connection.execute(f"SELECT client, slot, tier, vector, prior FROM {TABLE} WHERE request_id = ?",
                                   (request_id,)).fetchone()
        if found is None or (client is not None and found[0] != client):
            raise NotFoundError(f"no routed request '{request_id}' in the outcome records "
                                "(`broke router outcomes` lists them)")
        connection.execute(f"UPDATE {TABLE} SET feedback = ? WHERE request_id = ?", (verdict, request_id))
    except sqlite3.Error as exc:
        raise InvalidInputError(f"feedback not recorded: {exc}") from None
    finally:
        connection.close()
    _, slot, tier, vector, prior = found
    if not tier:
        return Feedback(False, f"slot {slot} was asked directly, not routed by tier: it says nothing about "
                               "which tier a prompt needs, so the router does not learn from it")
    if tier not in LEARNING_TIERS:
        return Feedback(False, f"answered by {tier}: it says nothing about the weaker tiers, so the router "
                               "does not learn from it")
    if not vector or prior is None:
        return Feedback(False, "no prompt vector was recorded for it, so the router does not learn from it")
    add(home, [Label(f"request:{request_id}", request_id, "feedback", VERDICTS[verdict], prior, 1.0,
                     np.frombuffer(vector, dtype=np.float32))])
    return Feedback(True)
