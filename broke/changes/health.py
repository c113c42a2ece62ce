"""Key and model health by hand (`key-state set`, `model-state set`, the admin API), and what each shows.

Health lives in `health.json`, not in the state file: a change goes through `HealthTransitions` (the same
rule the gateway follows) and is logged in the rotation log, by key variable name and reference only.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from broke.errors import InvalidInputError, UsageProblem

#: What a key or a backend may be set to by hand: `auth_failed` benches a key (a revoked one, say),
#: `incompatible` a backend that cannot serve the slot's clients; both until set back to healthy.
KEY_STATUSES = ("healthy", "cooldown", "blocked", "auth_failed")
MODEL_STATUSES = ("healthy", "cooldown", "blocked", "incompatible")
_KEY_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass(frozen=True)
class HealthRow:
    name: str
    status: str  # as the gateway sees it now; "unknown" when nothing was recorded
    until: float | None
    reason: str
    failures: int
    provider: str = ""  # keys only: the provider whose pool holds the key ("?" when none does)


def key_owners(home: Path) -> dict[str, str]:
    """Every key variable that is set (environment or `.env`) -> its provider."""
    from broke.catalog import load_catalog
    from broke.keys import key_pool, provider_env
    from broke.state.store import StateStore

    env = provider_env(home / ".env")
    prefixes = [(name, info.key_env) for name, info in load_catalog().providers.items() if info.key_env]
    prefixes += [(b.provider, b.key_env) for b in StateStore(home).load().backends.values() if b.key_env]
    return {key: provider for provider, prefix in prefixes for key in key_pool(prefix, env)}


def health_rows(home: Path, section: str, names: list[str]) -> list[HealthRow]:
    """Rows for `names` and every recorded name of `section` ("keys" or "models"), by name."""
    from broke.catalog import local_model_name
    from broke.health import HealthStore

    health = HealthStore(home).load()
    now = time.time()
    records = getattr(health, section)
    rows = []
    for name in sorted(set(names) | set(records)):
        record = records.get(name)
        if section == "models" and local_model_name(name):
            record = health.backend_record(name, local_model_name(name))  # a local model: its worker counts
        rows.append(HealthRow(name, record.effective(now) if record else "unknown",
                              record.until if record and record.until and record.until > now else None,
                              record.reason if record else "", record.failures if record else 0))
    return rows


def key_rows(home: Path) -> list[HealthRow]:
    owners = key_owners(home)
    return [HealthRow(r.name, r.status, r.until, r.reason, r.failures, owners.get(r.name, "?"))
            for r in health_rows(home, "keys", list(owners))]


def model_rows(home: Path) -> list[HealthRow]:
    """Every backend some slot routes to (chain or fallbacks), and every one with a record."""
    from broke.routing.backends import backend_chain
    from broke.state.store import StateStore

    state = StateStore(home).load()
    routed = sorted({b for slot in state.slots for b, _ in backend_chain(slot, state)[0]})
    return health_rows(home, "models", routed)


def _check(status: str, allowed: tuple[str, ...], seconds: float | None) -> None:
    if status not in allowed:
        raise UsageProblem(f"status must be one of {', '.join(allowed)}, got '{status}'")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise UsageProblem(f"--for takes a number of seconds above 0, got {seconds}")


def set_key_state(home: Path, key: str, status: str, seconds: float | None = None) -> float | None:
    """Set a key's status by hand; returns when it ends (None: until changed)."""
    from broke.health import MANUAL, HealthTransitions
    from broke.keys import key_ref, provider_env

    if not _KEY_NAME.fullmatch(key):
        raise InvalidInputError(f"'{key}' is not a key variable name (such as OPENROUTER_API_KEY_2)")
    _check(status, KEY_STATUSES, seconds)
    transitions = HealthTransitions(home)
    until = transitions.set_by_hand("keys", key, status, seconds)
    value = provider_env(home / ".env").get(key)
    transitions.log.write(event="manual", reason=MANUAL, status=status, provider=key_owners(home).get(key),
                          key_ref=key_ref(value) if value else None)
    return until


def set_model_state(home: Path, backend: str, status: str, seconds: float | None = None) -> float | None:
    """Set a backend's status by hand (a known backend only); returns when it ends (None: until changed)."""
    from broke.catalog import load_catalog
    from broke.changes.slots import check_backend
    from broke.health import MANUAL, HealthTransitions
    from broke.state.store import StateStore

    check_backend(backend, StateStore(home).load(), load_catalog())
    _check(status, MODEL_STATUSES, seconds)
    transitions = HealthTransitions(home)
    until = transitions.set_by_hand("models", backend, status, seconds)
    transitions.log.write(event="manual", reason=MANUAL, status=status, backend=backend)
    return until
