"""The router's labels in the home's records database (`broke.records`): what `auto` learns from.

Table `router_labels`: one row per labelled prompt, keyed so that labelling the same prompt (or
request) again replaces its label: `prompt:<sha256 of the text>` for imported outcome sets,
`request:<id>` for feedback on a routed request. A row holds the prompt's embedding, never its text.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np

from broke.errors import InvalidInputError
from broke.records import open_records

SCHEMA = """
CREATE TABLE IF NOT EXISTS router_labels (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    time REAL NOT NULL,
    origin TEXT NOT NULL,
    target REAL NOT NULL,
    prior REAL NOT NULL,
    weight REAL NOT NULL,
    vector BLOB NOT NULL
);
"""
#: Labels kept at most (the oldest go first).
KEEP = 10_000
#: A `winner` line's target: how much the strong model was preferred (0.5: neither).
WINNER_TARGETS = {"strong": 1.0, "weak": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class Label:
    """One label: a stable key, what `explain` calls it (FILE:LINE, the request id), where it came from,
    its target (0..1), the shipped prior's p_strong for the prompt, weight and the prompt's embedding."""

    key: str
    name: str
    origin: str
    target: float
    prior: float
    weight: float
    vector: np.ndarray


def prompt_key(prompt: str) -> str:
    return "prompt:" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def target_of(weak: float, strong: float) -> float:
    """The target of a prompt both models were scored on (0..1): 1 where only the strong model did well,
    0 where only the weak one did, 0.5 where they did as well (on `perf/router_quality.py --adapt` this
    beat the gain clipped at 0: a tie is not evidence that the weak model is preferred)."""
    return (strong - weak + 1.0) / 2.0


def _score(value: object) -> TypeGuard[float]:
    """Whether a JSON value is a score in 0..1."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def parse_outcomes(lines: Iterable[str], source: str) -> list[tuple[str, str, float]]:
    """(SOURCE:LINE, prompt, target) per JSON line `{"prompt", "weak", "strong"}` (scores 0..1) or
    `{"prompt", "winner"}` (weak|strong|tie). A bad line raises InvalidInputError naming it; blank lines are skipped."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not JSON ({exc.msg}); nothing was learned") from None
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not item["prompt"].strip():
            raise InvalidInputError(f"{where}: needs a non-empty string \"prompt\"; nothing was learned")
        if "winner" in item:
            if item["winner"] not in WINNER_TARGETS:
                raise InvalidInputError(f"{where}: \"winner\" must be weak, strong or tie; nothing was learned")
            out.append((where, item["prompt"], WINNER_TARGETS[item["winner"]]))
            continue
        weak, strong = item.get("weak"), item.get("strong")
        if not (_score(weak) and _score(strong)):
            raise InvalidInputError(f"{where}: needs \"weak\" and \"strong\" scores in 0..1, or a \"winner\"; "
                                    "nothing was learned")
        out.append((where, item["prompt"], target_of(float(weak), float(strong))))
    return out


def add(home: Path, labels: Sequence[Label]) -> None:
    """Store `labels` in one transaction (a label with a key already stored replaces it), then bound the table."""
    from broke.records import prune

    with closing(open_records(home, SCHEMA)) as connection:
        now = time.time()
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT OR REPLACE INTO router_labels (key, name, time, origin, target, prior, weight, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(label.key, label.name, now, label.origin, label.target, label.prior, label.weight,
              np.asarray(label.vector, dtype=np.float32).tobytes()) for label in labels])
        connection.execute("COMMIT")
        prune(connection, "router_labels", KEEP)


@dataclass(frozen=True)
class Stored:
    """Every stored label, oldest first: names, origins, targets, priors, weights and vectors (n, dims)."""

    names: tuple[str, ...]
    origins: tuple[str, ...]
    targets: np.ndarray
    priors: np.ndarray
    weights: np.ndarray
    vectors: np.ndarray


def read(home: Path, dims: int) -> Stored:
    """Every stored label whose vector has `dims` dimensions (others were made with other token vectors)."""
    with closing(open_records(home, SCHEMA)) as connection:
        rows = connection.execute(
            "SELECT name, origin, target, prior, weight, vector FROM router_labels ORDER BY id").fetchall()
    rows = [r for r in rows if len(r[5]) == dims * 4]
    vectors = (np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), dims)
               if rows else np.zeros((0, dims), dtype=np.float32))
    targets, priors, weights = (np.array([r[i] for r in rows], dtype=np.float64) for i in (2, 3, 4))
    return Stored(tuple(r[0] for r in rows), tuple(r[1] for r in rows), targets, priors, weights, vectors)


def version(home: Path) -> tuple[int, int]:
    """(count, newest id) of the stored labels: changes whenever labels are added, replaced or forgotten."""
    with closing(open_records(home, SCHEMA)) as connection:
        count, newest = connection.execute("SELECT count(*), coalesce(max(id), 0) FROM router_labels").fetchone()
    return int(count), int(newest)


def forget(home: Path) -> int:
    """Delete every label; returns how many there were."""
    with closing(open_records(home, SCHEMA)) as connection:
        return int(connection.execute("DELETE FROM router_labels").rowcount)
