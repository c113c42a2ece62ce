"""The gateway's cost book: prices each answer from the backend that gave it and at the slot's reference,
appends it to the ledger, and admits requests against the budgets of their profile and keys."""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from broke.catalog import Catalog
from broke.cost.budgets import Period, Spending, Standing, counter, period_bounds
from broke.cost.ledger import INSERT, KEEP, SCHEMA, TABLE, Entry
from broke.cost.prices import FREE, Rates, price_map, rates_for
from broke.cost.reference import default_references, reference_for
from broke.cost.usage import Usage
from broke.records import Appender
from broke.routing.resolve import Candidate
from broke.state.model import Budget, State

if TYPE_CHECKING:
    from broke.shared import Shared

log = logging.getLogger("broke.gateway")


@dataclass(frozen=True)
class Priced:
    """An answer's cost (None: unpriced) and what its reference backend would have charged."""

    cost_usd: float | None
    reference_backend: str | None
    reference_usd: float | None


@dataclass(frozen=True)
class Admission:
    """What budgets make of a request: refused (`refusal`), or its attempts, maybe with a warning."""

    attempts: tuple[Candidate, ...]
    refusal: str = ""
    warning: str = ""
    resets_at: float | None = None  # when a refused request's budget resets


def cost_header(cost_usd: float | None, answered: bool) -> str:
    """The `x-broke-cost-usd` value: USD with six decimals, "unpriced" for a backend with no price."""
    if cost_usd is None and answered:
        return "unpriced"
    return f"{cost_usd or 0.0:.6f}"


class CostBook:
    def __init__(self, home: Path, catalog: Catalog, state: Callable[[], State], shared: Shared | None = None) -> None:
        self.catalog, self.state = catalog, state
        self.shared = shared if shared is not None and shared.url else None  # spend shared with other gateways
        self.pending: set[asyncio.Task[None]] = set()  # costs being added to the shared counters
        self.gateway = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.references = default_references(home)
        self.spending = Spending(home, self.gateway)
        self.ledger = Appender(home, SCHEMA, INSERT, table=TABLE, keep=KEEP)
        self._warned: set[tuple[str, float]] = set()
        self._rates: dict[str, Rates | None] = {}  # backend -> its rates, for the state generation `_priced_at`
        self._priced_at = -1
        price_map()  # read once, at start, not on the first request

    def rates(self, backend: str, state: State) -> Rates | None:
        """A backend's rates (looked up once per state generation)."""
        if state.generation != self._priced_at:
            self._rates, self._priced_at = {}, state.generation
        if backend not in self._rates:
            self._rates[backend] = rates_for(backend, state, self.catalog)
        return self._rates[backend]

    def price(self, state: State, slot: str, backend: str, usage: Usage) -> Priced:
        rates = self.rates(backend, state)
        reference = reference_for(slot, state, self.references)
        reference_rates = self.rates(reference, state) if reference else None
        return Priced(rates.cost(usage) if rates else None, reference,
                      reference_rates.cost(usage) if reference_rates else None)

    def record(self, *, request_id: str, ts: float, client: str, slot: str, backend: str, key_ref: str | None,
               usage: Usage | None, status: int) -> Priced:
        """Price an ended request and append it to the ledger; its cost counts against its budgets."""
        usage = usage or Usage()
        nothing = backend == "-" or not usage.total  # no answer, or one that used no tokens: nothing to pay
        priced = Priced(0.0, None, None) if nothing else self.price(self.state(), slot, backend, usage)
        self.ledger.add(Entry(ts, request_id, self.gateway, client, slot, backend, key_ref, usage.input,
                              usage.output, usage.cache_read, usage.cache_write, priced.cost_usd,
                              priced.reference_backend, priced.reference_usd, status).row())
        if priced.cost_usd:
            owners = [("client", client), *([("key", key_ref)] if key_ref else [])]
            for kind, who in owners:
                self.spending.add(kind, who, priced.cost_usd, ts)
            if self.shared is not None:
                counts = [(counter(key), priced.cost_usd, end)
                          for kind, who in owners for key, end in self.spending.periods(kind, who, ts)]
                task = asyncio.get_running_loop().create_task(self.shared.add_spend(counts))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
        return priced

    async def _read_shared(self, owners: list[tuple[str, str, str]], now: float) -> None:
        """Refresh the shared totals of the owners' periods (kind, who, period) not read lately; one
        bounded Redis call, nothing when Redis cannot say."""
        if self.shared is None:
            return
        keys: list[Period] = [(kind, who, period, period_bounds(period, now)[0]) for kind, who, period in owners]
        keys = [key for key in dict.fromkeys(keys) if self.spending.stale(key, now)]
        found = await self.shared.spend([counter(key) for key in keys]) if keys else None
        for key, usd in zip(keys, found or [], strict=False):
            self.spending.learned(key, usd, now)

    def free(self, candidate: Candidate, state: State) -> bool:
        """Whether a candidate costs nothing (a local worker, or a backend priced at 0)."""
        return self.rates(candidate.backend, state) == FREE

    async def admit(self, client: str, profile: tuple[Budget | None, str], attempts: tuple[Candidate, ...],
                    state: State, key_refs: Mapping[str, str], now: float) -> Admission:
        """Hold a request to its profile's budget (and what the profile does past it) and its keys' budgets."""
        warnings: list[str] = []
        budget, on_budget = profile
        if self.shared is not None:
            owners = [("client", client, budget.period)] if budget is not None and budget.usd > 0 else []
            for candidate in attempts:
                policy, ref = state.key_policy.get(candidate.provider), key_refs.get(candidate.key_env or "")
                if policy is not None and policy.budget.usd > 0 and ref:
                    owners.append(("key", ref, policy.budget.period))
            await self._read_shared(owners, now)
        if budget is not None and budget.usd > 0:
            standing = self.spending.standing("client", client, f"profile '{client.split(':', 1)[-1]}'", budget,
                                              now)
            if standing.over:
                if on_budget != "fallback":
                    return Admission((), refusal=standing.describe(), resets_at=standing.resets_at)
                attempts = tuple(c for c in attempts if self.free(c, state))
                if not attempts:
                    return Admission((), refusal=standing.describe() + "; no candidate that costs nothing",
                                     resets_at=standing.resets_at)
                warnings.append(standing.describe() + "; only free candidates are tried")
            elif standing.warning:
                warnings.append(standing.describe())
                self._warn_once(client, standing)
        kept, spent_keys = [], []
        for candidate in attempts:
            key = self._key_standing(candidate, state, key_refs, now)
            if key is not None and key.over:
                spent_keys.append(key)
                continue
            if key is not None and key.warning:
                warnings.append(key.describe())
                self._warn_once(key.owner, key)
            kept.append(candidate)
        if attempts and not kept:
            return Admission((), refusal="; ".join(dict.fromkeys(s.describe() for s in spent_keys)),
                             resets_at=min(s.resets_at for s in spent_keys))
        return Admission(attempts if len(kept) == len(attempts) else tuple(kept),
                         warning="; ".join(dict.fromkeys(warnings)))

    def _key_standing(self, candidate: Candidate, state: State, key_refs: Mapping[str, str],
                      now: float) -> Standing | None:
        policy = state.key_policy.get(candidate.provider)
        ref = key_refs.get(candidate.key_env or "")
        if policy is None or policy.budget.usd <= 0 or not ref:
            return None
        return self.spending.standing("key", ref, f"key {candidate.key_env}", policy.budget, now)

    def _warn_once(self, who: str, standing: Standing) -> None:
        """One log line per owner and period when it passes 80% of its budget."""
        if (who, standing.resets_at) not in self._warned:
            self._warned.add((who, standing.resets_at))
            log.warning("budget: %s", standing.describe())

    def close(self) -> None:
        self.ledger.close()
        self.spending.close()
