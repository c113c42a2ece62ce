"""What the resolver needs, read from a broke home: state, health, provider environment and the time."""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from broke.catalog import Catalog, load_catalog
from broke.cost.prices import NOMINAL_REQUEST, request_cost, request_tokens
from broke.errors import StateFileError
from broke.health import Health, load_health
from broke.keys import provider_env
from broke.routing.backends import find_backend, routes_by_complexity
from broke.routing.resolve import Conversation, Estimator, Resolution, Scope, resolve
from broke.routing.transport import FAMILY_API, PATH_OF_API, Route, route_for, translated_apis
from broke.state.model import State
from broke.state.store import LoadedState, StateStore

if TYPE_CHECKING:
    from broke.baselines import Speed


@dataclass(frozen=True)
class RoutingContext:
    home: Path
    loaded: LoadedState
    health: Health
    env: Mapping[str, str]
    now: float
    catalog: Catalog
    speeds: Mapping[str, Speed] = field(default_factory=dict)  # backend id -> measured on this machine
    #: Why health.json could not be read ("" = it could, or is absent): health counts as unknown
    #: then, and `doctor` reports it (the gateway serves from memory and rewrites the file)
    health_problem: str = ""

    @property
    def state(self) -> State:
        return self.loaded.state

    @classmethod
    def load(cls, store: StateStore, *, with_speeds: bool = False) -> RoutingContext:
        """Read everything; measured speeds when asked, or when a model policy orders by them."""
        loaded = store.read()
        speeds: Mapping[str, Speed] = {}
        if with_speeds or any(p.mode == "fastest" for p in loaded.state.model_policy.values()):
            from broke.baselines import expected_speeds

            speeds = expected_speeds(store.home)
        try:
            health, health_problem = load_health(store.home / "health.json"), ""
        except StateFileError as exc:
            health, health_problem = Health(), str(exc)
        return cls(
            home=store.home,
            loaded=loaded,
            health=health,
            health_problem=health_problem,
            env=provider_env(store.home / ".env"),
            now=time.time(),
            catalog=load_catalog(),
            speeds=speeds,
        )

    def resolve(self, requested: str, scope: Scope | None = None, prompt: str | None = None,
                estimator: Estimator | None = None) -> Resolution:
        """What a request for `requested` gets now; with `prompt`, as the first turn of a conversation
        that `estimator` routes when the slot is routed by complexity (as the gateway does)."""
        conversation = Conversation((prompt,)) if prompt else None
        tokens = request_tokens(len(prompt), {}) if prompt else NOMINAL_REQUEST
        return resolve(requested, self.state, self.health, env=self.env, now=self.now, scope=scope,
                       catalog=self.catalog, conversation=conversation, estimator=estimator, speeds=self.speeds,
                       cost=request_cost(self.state, self.catalog, tokens))

    def unloaded_apis(self, backend_id: str, deployments: Iterable[str], workers: Mapping[str, list[str]],
                      native_forwarding: bool = True) -> list[str]:
        """The client APIs whose requests to `backend_id` a gateway started with `deployments` cannot
        serve (they need LiteLLM's translation, and its LiteLLM does not know the backend yet)."""
        backend = find_backend(backend_id, self.state, self.catalog)
        if backend is None or any(name == backend_id or name.startswith(f"{backend_id}@") for name in deployments):
            return []
        return translated_apis(backend, self.catalog, workers, native_forwarding=native_forwarding)

    def resolve_tiers(self, requested: str, scope: Scope | None = None) -> Resolution:
        """Without a prompt, for a slot routed by complexity with router tiers: every tier's candidates,
        cheapest tier first (each falls back to the tiers above, then to the slot's own chain), with
        their tier as source; no tier is picked, since the prompt picks it. Other slots: `resolve`."""
        if not (routes_by_complexity(self.catalog.require_slot(requested), self.state) and self.state.router.tiers):
            return self.resolve(requested, scope)
        every = resolve(requested, self.state, self.health, env=self.env, now=self.now, scope=scope,
                        catalog=self.catalog, p_strong=0.0, speeds=self.speeds,
                        cost=request_cost(self.state, self.catalog, NOMINAL_REQUEST))
        note = ("no prompt given: each request's prompt picks its tier and starts there; shown are every "
                "tier's candidates, cheapest tier first (`--prompt TEXT` shows one prompt's)")
        return replace(every, tier="", p_strong=None, notes=(*every.notes, note))

    def routes(self, resolution: Resolution, workers: Mapping[str, list[str]],
               native_forwarding: bool = True) -> dict[str, Route]:
        """How each attempt would travel for the slot's own clients (deployment -> route)."""
        path = PATH_OF_API[FAMILY_API.get(self.catalog.family_of(resolution.slot), "chat")]
        return {c.deployment: route_for(path, c, self.catalog, workers, native_forwarding=native_forwarding)
                for c in resolution.attempts}

    def resolve_all(self, scope: Scope | None = None) -> list[Resolution]:
        return [self.resolve(slot, scope) for slot in self.catalog.slots]

    def slot_rows(self) -> list[tuple[dict, Resolution]]:
        """Each slot's configuration and what a request for it gets now, as `broke list` shows it."""
        rows = []
        for resolution in self.resolve_all():
            config = self.state.slots[resolution.slot]
            rows.append(({
                "slot": resolution.slot,
                "family": self.catalog.family_of(resolution.slot),
                "backend": config.backend,
                "fallbacks": list(config.fallbacks),
                "pinned": config.pinned,
                "chosen": resolution.chosen.deployment if resolution.chosen else None,
                "reason": resolution.reason,
            }, resolution))
        return rows
