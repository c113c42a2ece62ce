"""The cost ledger: one append-only row per answered request in the home's records database, and the
sums `broke cost`, budgets, the dashboard and doctor read from it."""
from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broke.errors import InvalidInputError
from broke.records import open_records, records_path

TABLE = "cost_ledger"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    gateway TEXT NOT NULL,           -- the gateway run that wrote it (which counts its own rows in memory)
    client TEXT NOT NULL,            -- "client" or "profile:NAME"
    slot TEXT NOT NULL,
    backend TEXT NOT NULL,
    key_ref TEXT,                    -- the key's reference (never the key)
    input_tokens INTEGER NOT NULL,   -- fresh input, cache reads and writes left out
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL,                   -- NULL: the backend is unpriced
    reference_backend TEXT,
    reference_usd REAL,              -- the same tokens at the reference backend's prices (NULL: none or unpriced)
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts);
CREATE INDEX IF NOT EXISTS {TABLE}_client ON {TABLE} (client, ts);
CREATE INDEX IF NOT EXISTS {TABLE}_key ON {TABLE} (key_ref, ts);
"""
#: Rows the ledger keeps (the oldest go past it): years of a busy day's requests, a few hundred MB at most.
KEEP = 2_000_000
INSERT = f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

#: How `broke cost --by` groups rows: the SQL of each grouping.
GROUPS = {"slot": "slot", "backend": "backend", "profile": "client",
          "day": "date(ts, 'unixepoch')"}


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    ts: float
    request_id: str
    gateway: str
    client: str
    slot: str
    backend: str
    key_ref: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    reference_backend: str | None
    reference_usd: float | None
    status: int

    def row(self) -> tuple[object, ...]:
        return tuple(vars(self).values())


@dataclass
class Summary:
    """Spend and savings over a span, in total and grouped."""

    total_usd: float = 0.0
    saved_usd: float = 0.0
    requests: int = 0
    unpriced: int = 0  # requests whose backend has no price: not in total_usd
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"total_usd": round(self.total_usd, 6), "saved_usd": round(self.saved_usd, 6),
                "requests": self.requests, "unpriced": self.unpriced, "rows": self.rows}


_SUMS = ("COUNT(*), COALESCE(SUM(cost_usd), 0), "
         "COALESCE(SUM(CASE WHEN cost_usd IS NOT NULL AND reference_usd IS NOT NULL "
         "THEN reference_usd - cost_usd END), 0), SUM(cost_usd IS NULL), "
         "SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)")


def parse_since(value: str | None) -> float:
    """`--since DATE` (YYYY-MM-DD, UTC) as a timestamp; 0 when not given."""
    if not value:
        return 0.0
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"--since must be a date like 2026-01-31, got '{value}'") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def summarize(home: Path, *, by: str | None = None, since: float = 0.0) -> Summary:
    """The ledger's totals since `since`, grouped `by` slot, backend, profile or day (none: totals only)."""
    if by is not None and by not in GROUPS:
        raise InvalidInputError(f"--by must be one of {', '.join(GROUPS)}, got '{by}'")
    if not records_path(home).exists():
        return Summary()
    with closing(open_records(home, SCHEMA)) as connection:
        count, total, saved, unpriced, _ = connection.execute(
            f"SELECT {_SUMS} FROM {TABLE} WHERE ts >= ?", (since,)).fetchone()
        summary = Summary(total, saved, count, unpriced or 0)
        if by is not None:
            key = GROUPS[by]
            for name, n, usd, kept, none, tokens in connection.execute(
                    f"SELECT {key} AS name, {_SUMS} FROM {TABLE} WHERE ts >= ? GROUP BY name ORDER BY name",
                    (since,)):
                summary.rows.append({by: name, "requests": n, "total_usd": round(usd, 6),
                                     "saved_usd": round(kept, 6), "unpriced": none or 0, "tokens": tokens or 0})
    return summary


def spent(connection: sqlite3.Connection, *, since: float, client: str | None = None,
          key_ref: str | None = None, other_than: str = "") -> float:
    """USD spent since `since` by one client or one key, in rows of gateways other than `other_than`."""
    column, value = ("client", client) if client is not None else ("key_ref", key_ref)
    (usd,) = connection.execute(
        f"SELECT COALESCE(SUM(cost_usd), 0) FROM {TABLE} WHERE {column} = ? AND ts >= ? AND gateway != ?",
        (value, since, other_than)).fetchone()
    return float(usd)
