"""Cost settings: a backend's own prices, a slot's savings reference, and the budgets of profiles and
provider keys. Each is one locked read-modify-write (of the state store, or of the profile's file)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from broke.catalog import load_catalog
from broke.changes.slots import check_backend, check_slot
from broke.errors import InvalidInputError
from broke.presets import Profile, profiles
from broke.state.model import BUDGET_PERIODS, ON_BUDGET, Budget, Price, State
from broke.state.store import StateStore

PRICE_KINDS = ("input", "output", "cache_read", "cache_write")


def check_price(price: Price) -> Price:
    """Prices are USD per million tokens: finite and 0 or more."""
    for kind in PRICE_KINDS:
        value = getattr(price, kind)
        if value is not None and (not math.isfinite(value) or value < 0):
            flag = "--price-" + kind.replace("_", "-")
            raise InvalidInputError(f"{flag} must be a price in USD per million tokens, 0 or more, got {value}")
    return price


def apply_prices(state: State, backend_id: str, price: Price) -> None:
    """Merge the given prices (None: unchanged) into a backend's own (inside an update)."""
    if all(getattr(price, kind) is None for kind in PRICE_KINDS):
        return
    own = state.prices.setdefault(backend_id, Price())
    for kind in PRICE_KINDS:
        if getattr(price, kind) is not None:
            setattr(own, kind, getattr(price, kind))


def set_prices(store: StateStore, backend_id: str, price: Price) -> State:
    """Set a backend's own prices (USD per million tokens; the kinds given), over LiteLLM's price map."""
    check_price(price)
    if all(getattr(price, kind) is None for kind in PRICE_KINDS):
        raise InvalidInputError("give at least one of --price-in, --price-out, --price-cache-read, "
                                "--price-cache-write")
    catalog = load_catalog()

    def apply(state: State) -> None:
        check_backend(backend_id, state, catalog)
        apply_prices(state, backend_id, price)

    return store.update(apply)[0]


def set_cost_reference(store: StateStore, slot: str, backend_id: str) -> State:
    """Price a slot's answers also at `backend_id`, to show what routing saved."""
    catalog = load_catalog()
    check_slot(slot, catalog)

    def apply(state: State) -> None:
        check_backend(backend_id, state, catalog)
        state.cost_reference[slot] = backend_id

    return store.update(apply)[0]


@dataclass(frozen=True)
class BudgetChange:
    """Fields of a budget to change; None: unchanged."""

    usd: float | None = None
    period: str | None = None
    on_budget: str | None = None

    @property
    def empty(self) -> bool:
        return self.usd is None and self.period is None and self.on_budget is None

    def check(self) -> BudgetChange:
        if self.usd is not None and (not math.isfinite(self.usd) or self.usd < 0):
            raise InvalidInputError(f"--budget-usd must be 0 (none) or more, got {self.usd}")
        if self.period is not None and self.period not in BUDGET_PERIODS:
            raise InvalidInputError(f"--budget-period must be one of {', '.join(BUDGET_PERIODS)}, got '{self.period}'")
        if self.on_budget is not None and self.on_budget not in ON_BUDGET:
            raise InvalidInputError(f"--on-budget must be one of {', '.join(ON_BUDGET)}, got '{self.on_budget}'")
        return self

    def apply(self, budget: Budget) -> None:
        if self.usd is not None:
            budget.usd = self.usd
        if self.period is not None:
            budget.period = self.period

    def apply_to_profile(self, profile: Profile) -> None:
        self.apply(profile.budget)
        if self.on_budget is not None:
            profile.on_budget = self.on_budget


NO_BUDGET_CHANGE = BudgetChange()


def set_profile_budget(store: StateStore, name: str, change: BudgetChange) -> Path:
    """Change the budget of an existing profile (its file under the home's profiles/)."""
    change.check()
    library = profiles(store.home)
    profile = library.get(name).preset  # a missing profile is an error naming it
    change.apply_to_profile(profile)
    return library.save(name, profile)
