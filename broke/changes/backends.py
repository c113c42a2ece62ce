"""Custom backends and the key and model policies. Each is one locked read-modify-write of the state store."""
from __future__ import annotations

import re

from broke.catalog import Catalog, load_catalog, split_backend_id
from broke.changes.costs import NO_BUDGET_CHANGE, BudgetChange, apply_prices, check_price
from broke.changes.slots import check_backend, check_slot
from broke.errors import InvalidInputError, NotFoundError
from broke.state.model import (
    KEY_POLICY_MODES,
    MODEL_POLICY_MODES,
    CustomBackend,
    KeyPolicy,
    ModelPolicy,
    Price,
    State,
)
from broke.state.store import StateStore

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


def add_backend(
    store: StateStore, backend_id: str, *, provider: str, model: str, api_base: str | None,
    key_env: str | None, pinned: bool, price: Price | None = None,
) -> State:
    """Register a custom backend `ID` (PROVIDER/MODEL-like) served by `provider`, with its own prices if given."""
    catalog = load_catalog()
    split_backend_id(backend_id)
    info = catalog.provider(provider)
    if backend_id in catalog.backends:
        raise InvalidInputError(f"'{backend_id}' is a known backend already; pick another id")
    if info.needs_api_base and not api_base:
        raise InvalidInputError(f"provider '{provider}' needs --api-base URL")
    if api_base is not None and not is_http_url(api_base):
        raise InvalidInputError(f"--api-base must be an http:// or https:// URL, got '{api_base}'")
    if key_env is not None and not ENV_NAME.fullmatch(key_env):
        raise InvalidInputError(f"--key-env must be an environment variable name, got '{key_env}'")
    if not model.strip():
        raise InvalidInputError("--model must not be empty")
    if price is not None:
        check_price(price)

    def apply(state: State) -> None:
        if backend_id in state.backends:
            raise InvalidInputError(
                f"custom backend '{backend_id}' exists; `broke backend remove {backend_id}` first"
            )
        state.backends[backend_id] = CustomBackend(provider, model, api_base, key_env, pinned)
        if price is not None:
            apply_prices(state, backend_id, price)

    return store.update(apply)[0]


def backend_users(state: State, backend_id: str) -> list[str]:
    """Where the state refers to a backend: slots, fallbacks, model policies, router tiers."""
    users = [f"slot {slot}" for slot, c in state.slots.items() if backend_id in [c.backend, *c.fallbacks]]
    users += [f"model-policy {slot}" for slot, p in state.model_policy.items() if backend_id in p.order]
    users += [f"router tier {tier}" for tier, b in state.router.tiers.items() if backend_id in b]
    return users


def remove_backend(store: StateStore, backend_id: str) -> State:
    def apply(state: State) -> None:
        if backend_id not in state.backends:
            if backend_id in load_catalog().backends:
                raise InvalidInputError(f"'{backend_id}' is a known backend, not a custom one")
            raise NotFoundError(f"unknown custom backend '{backend_id}'; see `broke models`")
        users = backend_users(state, backend_id)
        if users:
            raise InvalidInputError(
                f"backend '{backend_id}' is still used by {', '.join(users)}; swap it out first"
            )
        del state.backends[backend_id]
        state.prices.pop(backend_id, None)

    return store.update(apply)[0]


def key_policy_providers(state: State, catalog: Catalog) -> list[str]:
    """Providers a key policy can apply to: those with a key in the catalog, those of custom
    backends with their own --key-env, and any with a policy stored (in that order)."""
    names = [p for p, info in catalog.providers.items() if info.key_env]
    names += [b.provider for b in state.backends.values() if b.key_env]
    return list(dict.fromkeys(names + list(state.key_policy)))


def set_key_policy(store: StateStore, provider: str, *, mode: str | None = None,
                   cooldown_s: int | None = None, retries: int | None = None,
                   order: list[str] | None = None, budget: BudgetChange = NO_BUDGET_CHANGE) -> State:
    """Change a provider's key policy (given fields only; `budget`: what each of its keys may spend per
    period); applies to the gateway's next request."""
    catalog = load_catalog()
    info = catalog.provider(provider)
    budget.check()
    if budget.on_budget is not None:
        raise InvalidInputError("--on-budget is for profiles; a key past its budget sits out")
    if mode is not None and mode not in KEY_POLICY_MODES:
        raise InvalidInputError(f"--mode must be one of {', '.join(KEY_POLICY_MODES)}")
    if (cooldown_s is not None and cooldown_s < 0) or (retries is not None and retries < 0):
        raise InvalidInputError("--cooldown and --retries must be 0 or more")
    prefixes = {info.key_env} | {b.key_env for b in store.load().backends.values()
                                 if b.provider == provider and b.key_env}
    for name in order or []:
        if not any(re.fullmatch(rf"{re.escape(p)}(_\d+)?", name) for p in prefixes if p):
            raise InvalidInputError(f"--order names '{name}', not a key variable of {provider} "
                                    f"({', '.join(sorted(p for p in prefixes if p))}, …_2, …)")

    def apply(state: State) -> None:
        policy = state.key_policy.setdefault(provider, KeyPolicy())
        for name, value in (("mode", mode), ("cooldown_s", cooldown_s), ("retries", retries),
                            ("order", order)):
            if value is not None:
                setattr(policy, name, value)
        budget.apply(policy.budget)

    return store.update(apply)[0]


def set_model_policy(store: StateStore, slot: str, *, mode: str | None = None,
                     order: list[str] | None = None, cooldown_last: bool | None = None,
                     retries: int | None = None, cooldown_s: int | None = None) -> State:
    """Change how a slot orders its backends, whether cooldown ones are tried last, how many more backends
    a request tries after the first and how long a failed one sits out at most (given fields only)."""
    catalog = load_catalog()
    check_slot(slot, catalog)
    if mode is not None and mode not in MODEL_POLICY_MODES:
        raise InvalidInputError(f"--mode must be one of {', '.join(MODEL_POLICY_MODES)}")
    if (cooldown_s is not None and cooldown_s < 0) or (retries is not None and retries < 0):
        raise InvalidInputError("--cooldown and --retries must be 0 or more")

    def apply(state: State) -> None:
        for backend_id in order or []:
            check_backend(backend_id, state, catalog, slot)
        policy = state.model_policy.setdefault(slot, ModelPolicy())
        if mode is not None:
            policy.mode = mode
        if order is not None:
            policy.order = list(order)
        if cooldown_last is not None:
            policy.cooldown_last = cooldown_last
        if retries is not None:
            policy.retries = retries
        if cooldown_s is not None:
            policy.cooldown_s = cooldown_s

    return store.update(apply)[0]
