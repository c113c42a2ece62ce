"""What the resolver needs, read from a broke home: state, health, provider environment and the time."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broke.catalog import Catalog, load_catalog
from broke.health import Health, load_health
from broke.keys import provider_env
from broke.resolver import Resolution, Scope, resolve
from broke.state.model import State
from broke.state.store import LoadedState, StateStore


@dataclass(frozen=True)
class RoutingContext:
    home: Path
    loaded: LoadedState
    health: Health
    env: Mapping[str, str]
    now: float
    catalog: Catalog

    @property
    def state(self) -> State:
        return self.loaded.state

    @classmethod
    def load(cls, store: StateStore) -> "RoutingContext":
        return cls(
            home=store.home,
            loaded=store.read(),
            health=load_health(store.home / "health.json"),
            env=provider_env(store.home / ".env"),
            now=time.time(),
            catalog=load_catalog(),
        )

    def resolve(self, requested: str, scope: Scope | None = None, p_strong: float | None = None) -> Resolution:
        return resolve(requested, self.state, self.health, env=self.env, now=self.now, scope=scope,
                       catalog=self.catalog, p_strong=p_strong)

    def resolve_all(self, scope: Scope | None = None) -> list[Resolution]:
        return [self.resolve(slot, scope) for slot in self.catalog.slots]
