"""Budgets that hold: what an owner (a profile, a provider key) spent in its budget's period, across
restarts and concurrent gateways on one home.

Spend is the ledger's: this gateway's own answers are counted in memory as they end (its ledger rows are
written a moment later, by the Appender), every other row (earlier runs, other gateways) is read from the
ledger, at most once every REFRESH_S per owner. With Redis shared (broke.shared), every gateway also adds
each answer's cost to the owner's counter there, and the spend that counts is the larger of the shared
total (read at most once every REFRESH_S) and the home's own. A request is admitted while the owner's spend is under its
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
#: Seconds a shared total read from Redis counts for; past that (Redis down) the home's own spend holds.
SHARED_S = 10.0
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


Period = tuple[str, str, str, float]


def counter(key: Period) -> str:
    """The name of an owner's spend counter for one period, shared by every gateway."""
    kind, who, period, start = key
    return f"{kind}:{who}:{period}:{int(start)}"


class Spending:
    """Spend per owner and period. Owners are ("client", "profile:NAME") or ("key", KEY_REF)."""

    def __init__(self, home: Path, gateway: str) -> None:
        self.home, self.gateway = home, gateway
        self._connection: sqlite3.Connection | None = None
        self.own: dict[Period, float] = {}  # (kind, who, period, period start) -> USD
        self.others: dict[Period, tuple[float, float]] = {}  # -> (read at, USD)
        self.shared: dict[Period, tuple[float, float, float]] = {}  # -> (read at, USD in Redis, own USD then)

    def _ledger(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = open_records(self.home, SCHEMA)
        return self._connection

    def add(self, kind: str, who: str, usd: float, ts: float) -> None:
        """This gateway's own answer (its ledger row may not be written yet)."""
        for key, _ in self.periods(kind, who, ts):
            self.own[key] = self.own.get(key, 0.0) + usd

    @staticmethod
    def periods(kind: str, who: str, ts: float) -> list[tuple[Period, float]]:
        """The owner's day and month `ts` falls in, each with when it ends."""
        return [((kind, who, period, start), end)
                for period in ("day", "month") for start, end in [period_bounds(period, ts)]]

    def stale(self, key: Period, now: float) -> bool:
        """Whether the shared total of `key` is due to be read again."""
        read = self.shared.get(key)
        return read is None or now - read[0] >= REFRESH_S

    def learned(self, key: Period, usd: float, now: float) -> None:
        """The shared total of `key` as Redis has it now."""
        self.shared[key] = (now, usd, self.own.get(key, 0.0))

    def spent(self, kind: str, who: str, period: str, now: float) -> tuple[float, float]:
        """(USD spent in the period `now` falls in, when that period ends)."""
        start, end = period_bounds(period, now)
        key = (kind, who, period, start)
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
        own = self.own.get(key, 0.0)
        shared = self.shared.get(key)
        if shared is None or now - shared[0] >= SHARED_S:  # no Redis, or none lately: this home's spend
            return own + read[1], end
        return max(own + read[1], shared[1] + own - shared[2]), end  # + what this gateway spent since the read

    def standing(self, kind: str, who: str, owner: str, budget: Budget, now: float) -> Standing:
        usd, end = self.spent(kind, who, budget.period, now)
        return Standing(owner, budget, usd, end)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
