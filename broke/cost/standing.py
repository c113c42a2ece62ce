"""Budgets and what is left of them, as the CLI shows them (`doctor`, `explain`, `profile budget`): spend
read from the ledger, every gateway's rows counted."""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from broke.catalog import Catalog
from broke.control.runfiles import key_ref
from broke.cost.budgets import Standing, period_bounds
from broke.cost.ledger import SCHEMA, spent
from broke.keys import key_pool
from broke.presets import profiles
from broke.records import open_records, records_path
from broke.state.model import Budget, State


def _standing(home: Path, owner: str, budget: Budget, now: float, *, client: str | None = None,
              ref: str | None = None) -> Standing:
    start, end = period_bounds(budget.period, now)
    if not records_path(home).exists():
        return Standing(owner, budget, 0.0, end)
    with closing(open_records(home, SCHEMA)) as connection:
        return Standing(owner, budget, spent(connection, since=start, client=client, key_ref=ref), end)


def budget_standing(home: Path, profile: str, now: float) -> Standing | None:
    """Where profile `profile` stands against its budget (None: it has none)."""
    budget = profiles(home).get(profile).preset.budget
    if budget.usd <= 0:
        return None
    return _standing(home, f"profile '{profile}'", budget, now, client=f"profile:{profile}")


def key_variables(provider: str, state: State, catalog: Catalog, env: Mapping[str, str]) -> list[str]:
    """The key variables of a provider's pools that are set."""
    prefixes = [catalog.providers[provider].key_env] if provider in catalog.providers else []
    prefixes += [b.key_env for b in state.backends.values() if b.provider == provider and b.key_env]
    return [name for prefix in dict.fromkeys(p for p in prefixes if p) for name in key_pool(prefix, env)]


def standings(home: Path, state: State, catalog: Catalog, env: Mapping[str, str], now: float) -> list[Standing]:
    """Every budget there is: each profile's, and each key's of a provider whose key policy has one."""
    found = [s for entry in profiles(home).list()
             if (s := budget_standing(home, entry.name, now)) is not None]
    for provider, policy in state.key_policy.items():
        if policy.budget.usd <= 0:
            continue
        for name in key_variables(provider, state, catalog, env):
            found.append(_standing(home, f"key {name}", policy.budget, now, ref=key_ref(env[name])))
    return found
