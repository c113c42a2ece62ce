"""Budgets that hold: what an owner (a profile, a provider key) spent in its budget's period, across
restarts and concurrent gateways on one home.

Spend is the ledger's: this gateway's own answers are counted in memory as they end (its ledger rows are
written a moment later, by the Appender), every other row (earlier runs, other gateways) is read from the
ledger, at most once every REFRESH_S per owner. A request is admitted while the owner's spend is under its
budget, so the overshoot is at most what the requests already in flight cost when the limit is crossed.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from broke.cost.ledger import SCHEMA, spent
from broke.records import RecordsError, open_records
from broke.state.model import Budget

log = logging.getLogger("broke.gateway")

#: Seconds another gateway's spend may be stale by.
REFRESH_S = 1.0
#: The share of a budget past which answers carry a warning.
WARN_SHARE = 0.8


DAY_S = 86400


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """The start and end (timestamps, UTC) of the day or month `now` falls in."""
    return _bounds(period, int(now // DAY_S))


@functools.lru_cache(maxsize=64)
def _bounds(period: str, day: int) -> tuple[float, float]:
    moment = dt.datetime.fromtimestamp(day * DAY_S, dt.UTC)
    if period == "day":
        start = dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)
        return start.timestamp(), (start + dt.timedelta(days=1)).timestamp()
    start = dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC)
    following = dt.datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start.timestamp(), following.timestamp()


def when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Standing:
    """Where an owner stands against its budget now."""

    owner: str  # as people read it: "profile 'ci'", "key OPENAI_API_KEY_2"
    budget: Budget
    spent: float
    resets_at: float

    @property
    def left(self) -> float:
        return max(self.budget.usd - self.spent, 0.0)

    @property
    def over(self) -> bool:
        return self.spent >= self.budget.usd

    @property
    def warning(self) -> bool:
        return self.spent >= WARN_SHARE * self.budget.usd

    def describe(self) -> str:
        per = self.budget.period
        if self.over:
            return (f"{self.owner} has spent its budget (${self.spent:.4f} of ${self.budget.usd:.2f} per {per}); "
                    f"it resets at {when(self.resets_at)}")
        return (f"{self.owner} has spent {self.spent / self.budget.usd:.0%} of its budget "
                f"(${self.spent:.4f} of ${self.budget.usd:.2f} per {per}, ${self.left:.4f} left)")

    def to_dict(self) -> dict[str, object]:
        return {"owner": self.owner, "budget_usd": self.budget.usd, "period": self.budget.period,
                "spent_usd": round(self.spent, 6),
                "left_usd": round(self.left, 6), "resets_at": when(self.resets_at)}


class Spending:
    """Spend per owner and period. Owners are ("client", "profile:NAME") or ("key", KEY_REF)."""

    def __init__(self, home: Path, gateway: str) -> None:
        self.home, self.gateway = home, gateway
        self._connection: sqlite3.Connection | None = None
        self.own: dict[tuple[str, str, float], float] = {}  # (kind, who, period start) -> USD
        self.others: dict[tuple[str, str, float], tuple[float, float]] = {}  # -> (read at, USD)

    def _ledger(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = open_records(self.home, SCHEMA)
        return self._connection

    def add(self, kind: str, who: str, usd: float, ts: float) -> None:
        """This gateway's own answer (its ledger row may not be written yet)."""
        for period in ("day", "month"):
            key = (kind, who, period_bounds(period, ts)[0])
            self.own[key] = self.own.get(key, 0.0) + usd

    def spent(self, kind: str, who: str, period: str, now: float) -> tuple[float, float]:
        """(USD spent in the period `now` falls in, when that period ends)."""
        start, end = period_bounds(period, now)
        key = (kind, who, start)
        read = self.others.get(key)
        if read is None or now - read[0] >= REFRESH_S:
            client, key_ref = (who, None) if kind == "client" else (None, who)
            try:
                usd = spent(self._ledger(), since=start, client=client, key_ref=key_ref, other_than=self.gateway)
            except (RecordsError, sqlite3.Error) as exc:  # the ledger unreadable: this gateway's own spend holds
                log.error("budget of %s: other gateways' spend not read (%s)", who, exc)
                usd = read[1] if read else 0.0
            read = (now, usd)
            self.others[key] = read
        return self.own.get(key, 0.0) + read[1], end

    def standing(self, kind: str, who: str, owner: str, budget: Budget, now: float) -> Standing:
        usd, end = self.spent(kind, who, budget.period, now)
        return Standing(owner, budget, usd, end)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
