"""Every state-changing operation: each is one locked read-modify-write of the state store."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from broke.catalog import Catalog, load_catalog, local_backend_id, split_backend_id
from broke.errors import BrokeError, InvalidInputError, NotFoundError
from broke.presets import Profile, Team, profiles, teams
from broke.routing.backends import backend_chain, find_backend, is_slot_reference
from broke.state.model import (
    KEY_POLICY_MODES,
    MODEL_POLICY_MODES,
    TIERS,
    Access,
    CustomBackend,
    KeyPolicy,
    ModelPolicy,
    Node,
    SlotConfig,
    State,
)
from broke.state.store import StateStore

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def check_backend(backend_id: str, state: State, catalog: Catalog, slot: str | None = None) -> None:
    """An unknown backend, or a floating one for a pinned slot, is refused."""
    backend = find_backend(backend_id, state, catalog)
    if backend is None:
        raise NotFoundError(
            f"unknown backend '{backend_id}'; see `broke models`, or add it with `broke backend add`"
        )
    if slot and state.slots[slot].pinned and backend.floating:
        raise InvalidInputError(
            f"slot '{slot}' is pinned and '{backend_id}' is a floating alias; pick a pinned backend"
        )


def check_slot(name: str, catalog: Catalog) -> str:
    if name not in catalog.slots:
        raise NotFoundError(f"unknown slot '{name}'; slots are: {', '.join(catalog.slots)}")
    return name


def swap(store: StateStore, assignments: list[tuple[str, str]]) -> State:
    """Point each slot at a backend, all in one write (one generation)."""
    catalog = load_catalog()
    for slot, _ in assignments:
        check_slot(slot, catalog)

    def apply(state: State) -> None:
        for slot, backend_id in assignments:
            check_backend(backend_id, state, catalog, slot)
            state.slots[slot].backend = backend_id

    return store.update(apply)[0]


def set_fallbacks(store: StateStore, slot: str, entries: list[str]) -> State:
    """Replace a slot's fallback chain (backend ids or slot names); refuses cycles and unknowns."""
    catalog = load_catalog()
    check_slot(slot, catalog)

    def apply(state: State) -> None:
        for entry in entries:
            if is_slot_reference(entry):
                check_slot(entry, catalog)
                if entry == slot:
                    raise InvalidInputError(f"slot '{slot}' cannot fall back to itself")
            else:
                check_backend(entry, state, catalog, slot)
        state.slots[slot].fallbacks = list(entries)
        cycles = [note for note in backend_chain(slot, state)[1] if note.startswith("fallback cycle")]
        if cycles:
            raise InvalidInputError(cycles[0])

    return store.update(apply)[0]


def _apply_team(state: State, name: str, team: Team, catalog: Catalog, source: Path) -> None:
    """Put a team's slots into the state; the same checks as `swap` and `fallback`, naming the file."""
    for slot, config in team.slots.items():
        try:
            check_slot(slot, catalog)
            state.slots[slot] = SlotConfig(config.backend, list(config.fallbacks), config.pinned)
            for entry in [config.backend, *config.fallbacks]:
                if is_slot_reference(entry):
                    check_slot(entry, catalog)
                else:
                    check_backend(entry, state, catalog, slot)
        except BrokeError as exc:
            raise InvalidInputError(f"{source}: slot '{slot}': {exc}") from None
    state.active_team = name


def load_team(store: StateStore, name: str) -> State:
    entry = teams(store.home).get(name)
    catalog = load_catalog()
    return store.update(lambda s: _apply_team(s, name, entry.preset, catalog, entry.path))[0]


def save_team(store: StateStore, name: str, description: str = "") -> Path:
    """Save the current slot mapping as a user team (the state itself does not change)."""
    state = store.load()
    return teams(store.home).save(name, Team(description=description, slots=state.slots))


def load_profile(store: StateStore, name: str) -> State:
    """Apply a profile: its team (if any), its access limits, and mark it active."""
    entry = profiles(store.home).get(name)
    profile = entry.preset
    team = teams(store.home).get(profile.team) if profile.team else None
    catalog = load_catalog()
    for slot in profile.access.slots:
        check_slot(slot, catalog)

    def apply(state: State) -> None:
        if team is not None:
            _apply_team(state, team.name, team.preset, catalog, team.path)
        state.access = Access(list(profile.access.slots), profile.access.rpm, profile.access.tpm)
        state.active_profile = name

    return store.update(apply)[0]


@dataclass(frozen=True)
class ProfileChange:
    """Fields of `profile new`; None means unchanged (or the default for a new profile)."""

    team: str | None = None
    slots: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    description: str | None = None


def write_profile(store: StateStore, name: str, change: ProfileChange) -> tuple[Path, bool]:
    """Create a user profile, or update the given fields of an existing one. Returns (path, created)."""
    library = profiles(store.home)
    catalog = load_catalog()
    created = not library.exists(name)
    profile = Profile() if created else library.get(name).preset
    if change.team:
        teams(store.home).get(change.team)
    for slot in change.slots or []:
        check_slot(slot, catalog)
    for limit in (change.rpm, change.tpm):
        if limit is not None and limit < 0:
            raise InvalidInputError("rpm and tpm must be 0 (unlimited) or more")
    if change.team is not None:
        profile.team = change.team
    if change.slots is not None:
        profile.access.slots = list(change.slots)
    if change.rpm is not None:
        profile.access.rpm = change.rpm
    if change.tpm is not None:
        profile.access.tpm = change.tpm
    if change.description is not None:
        profile.description = change.description
    return library.save(name, profile), created


def set_frozen(store: StateStore, frozen: bool) -> State:
    def apply(state: State) -> None:
        state.frozen = frozen

    return store.update(apply, allow_frozen=True)[0]


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


def add_backend(
    store: StateStore, backend_id: str, *, provider: str, model: str, api_base: str | None,
    key_env: str | None, pinned: bool,
) -> State:
    """Register a custom backend `ID` (PROVIDER/MODEL-like) served by `provider`."""
    catalog = load_catalog()
    split_backend_id(backend_id)
    info = catalog.provider(provider)
    if backend_id in catalog.backends:
        raise InvalidInputError(f"'{backend_id}' is a known backend already; pick another id")
    if info.needs_api_base and not api_base:
        raise InvalidInputError(f"provider '{provider}' needs --api-base URL")
    if api_base is not None and not _is_http_url(api_base):
        raise InvalidInputError(f"--api-base must be an http:// or https:// URL, got '{api_base}'")
    if key_env is not None and not _ENV_NAME.fullmatch(key_env):
        raise InvalidInputError(f"--key-env must be an environment variable name, got '{key_env}'")
    if not model.strip():
        raise InvalidInputError("--model must not be empty")

    def apply(state: State) -> None:
        if backend_id in state.backends:
            raise InvalidInputError(
                f"custom backend '{backend_id}' exists; `broke backend remove {backend_id}` first"
            )
        state.backends[backend_id] = CustomBackend(provider, model, api_base, key_env, pinned)

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

    return store.update(apply)[0]


def key_policy_providers(state: State, catalog: Catalog) -> list[str]:
    """Providers a key policy can apply to: those with a key in the catalog, those of custom
    backends with their own --key-env, and any with a policy stored (in that order)."""
    names = [p for p, info in catalog.providers.items() if info.key_env]
    names += [b.provider for b in state.backends.values() if b.key_env]
    return list(dict.fromkeys(names + list(state.key_policy)))


def set_key_policy(store: StateStore, provider: str, *, mode: str | None = None,
                   cooldown_s: int | None = None, retries: int | None = None,
                   order: list[str] | None = None) -> State:
    """Change a provider's key policy (given fields only); applies to the gateway's next request."""
    catalog = load_catalog()
    info = catalog.provider(provider)
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

    return store.update(apply)[0]


def set_model_policy(store: StateStore, slot: str, *, mode: str | None = None,
                     order: list[str] | None = None, cooldown_last: bool | None = None) -> State:
    """Change how a slot orders its backends, and whether cooldown ones are tried last (given fields only)."""
    catalog = load_catalog()
    check_slot(slot, catalog)
    if mode is not None and mode not in MODEL_POLICY_MODES:
        raise InvalidInputError(f"--mode must be one of {', '.join(MODEL_POLICY_MODES)}")

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

    return store.update(apply)[0]


def add_local_model(store: StateStore, name: str, model_ref: str, *, concurrency: int = 0) -> State:
    """Register a local model as backend `mlx/NAME`; `model_ref` is a directory or a hub repo id.

    `concurrency`: requests one of its workers serves at once (0: mlx_lm.server's default)."""
    backend_id = local_backend_id(name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}", name) or ".." in name:
        raise InvalidInputError(f"local model name '{name}' must be letters, digits, '.', '_', '-' or '/'")
    if backend_id in load_catalog().backends:
        raise InvalidInputError(f"'{backend_id}' is a known backend already; pick another --name")

    def apply(state: State) -> None:
        if backend_id in state.backends:
            raise InvalidInputError(f"'{backend_id}' exists; `broke backend remove {backend_id}` first")
        state.backends[backend_id] = CustomBackend("mlx", model_ref, pinned=True, concurrency=concurrency)

    return store.update(apply)[0]


def add_node(store: StateStore, name: str, url: str, *, model: str, token_env: str | None) -> State:
    """A worker on another machine joins the pool of local model `model` (backend mlx/MODEL)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise InvalidInputError(f"node name '{name}' must be letters, digits, '.', '_' or '-'")
    if not _is_http_url(url):
        raise InvalidInputError(f"node URL must be an http:// or https:// URL, got '{url}'")
    if token_env is not None and not _ENV_NAME.fullmatch(token_env):
        raise InvalidInputError(f"--token-env must be an environment variable name, got '{token_env}'")
    backend_id = local_backend_id(model)

    def apply(state: State) -> None:
        if name in state.nodes:
            raise InvalidInputError(f"node '{name}' exists; `broke node remove {name}` first")
        if find_backend(backend_id, state, load_catalog()) is None:
            state.backends[backend_id] = CustomBackend("mlx", model, pinned=True)
        state.nodes[name] = Node(url.rstrip("/"), model, token_env)

    return store.update(apply)[0]


def remove_node(store: StateStore, name: str) -> State:
    def apply(state: State) -> None:
        if name not in state.nodes:
            raise NotFoundError(f"unknown node '{name}'; see `broke node list`")
        del state.nodes[name]

    return store.update(apply)[0]


def set_tier(store: StateStore, tier: str, backends: list[str]) -> State:
    """Set the backends of a router tier (basic, balanced or premium); an empty list clears it."""
    if tier not in TIERS:
        raise InvalidInputError(f"tier must be one of {', '.join(TIERS)}, got '{tier}'")
    catalog = load_catalog()

    def apply(state: State) -> None:
        for backend_id in backends:
            check_backend(backend_id, state, catalog)
        if backends:
            state.router.tiers[tier] = list(backends)
        else:
            state.router.tiers.pop(tier, None)

    return store.update(apply)[0]


def set_thresholds(store: StateStore, *, balanced_from: float | None = None,
                   premium_from: float | None = None) -> State:
    """Where tiers start on p_strong (0..1); balanced must not start above premium."""

    def apply(state: State) -> None:
        if balanced_from is not None:
            state.router.balanced_from = balanced_from
        if premium_from is not None:
            state.router.premium_from = premium_from
        router = state.router
        if not 0.0 <= router.balanced_from <= router.premium_from <= 1.0:
            raise InvalidInputError(
                f"thresholds must satisfy 0 <= balanced ({router.balanced_from}) <= premium "
                f"({router.premium_from}) <= 1")

    return store.update(apply)[0]
