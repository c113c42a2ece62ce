"""Slot changes: swaps, fallbacks, freeze, and the `auto` router's tiers and thresholds. Each is one locked
read-modify-write of the state store."""
from __future__ import annotations

from broke.catalog import Catalog, load_catalog
from broke.errors import InvalidInputError, NotFoundError
from broke.routing.backends import backend_chain, find_backend, is_slot_reference
from broke.state.model import (
    TIERS,
    State,
)
from broke.state.store import StateStore


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


def apply_fallbacks(state: State, slot: str, entries: list[str], catalog: Catalog) -> None:
    """Put a fallback chain into `state` (inside a store update); refuses cycles and unknowns."""
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


def set_fallbacks(store: StateStore, slot: str, entries: list[str]) -> State:
    """Replace a slot's fallback chain (backend ids or slot names); refuses cycles and unknowns."""
    catalog = load_catalog()
    check_slot(slot, catalog)

    return store.update(lambda state: apply_fallbacks(state, slot, entries, catalog))[0]


def set_frozen(store: StateStore, frozen: bool) -> State:
    def apply(state: State) -> None:
        state.frozen = frozen

    return store.update(apply, allow_frozen=True)[0]


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
