"""Editing a team file: one slot's fallbacks (`team fallback`) and the access limits loading it sets
(`team access`). A shipped team is saved as a user team of the same name (which then hides it); the state
itself does not change until the team is loaded."""
from __future__ import annotations

import copy
from pathlib import Path

from broke.catalog import load_catalog
from broke.changes.presets import apply_team
from broke.changes.slots import apply_fallbacks, check_slot
from broke.errors import InvalidInputError
from broke.presets import teams
from broke.state.model import Access
from broke.state.store import StateStore


def set_team_fallbacks(store: StateStore, name: str, slot: str, entries: list[str]) -> Path:
    """Replace the fallbacks of `slot` in team `name`, checked as `fallback` checks them (against the
    state as it would be with the team loaded). Returns the team file written."""
    library = teams(store.home)
    entry = library.get(name)
    catalog = load_catalog()
    check_slot(slot, catalog)
    team = copy.deepcopy(entry.preset)
    if slot not in team.slots:
        raise InvalidInputError(f"team '{name}' does not set slot '{slot}'; see `broke team show {name}`")
    trial = store.load()
    apply_team(trial, name, team, catalog, entry.path)
    apply_fallbacks(trial, slot, entries, catalog)
    team.slots[slot].fallbacks = list(entries)
    return library.save(name, team)


def set_team_access(store: StateStore, name: str, *, slots: list[str] | None = None, rpm: int | None = None,
                    tpm: int | None = None) -> Path:
    """Set the given access limits loading team `name` applies (unset fields keep the team's, else none)."""
    library = teams(store.home)
    team = copy.deepcopy(library.get(name).preset)
    catalog = load_catalog()
    for allowed in slots or []:
        check_slot(allowed, catalog)
    for limit in (rpm, tpm):
        if limit is not None and limit < 0:
            raise InvalidInputError("--rpm and --tpm must be 0 (unlimited) or more")
    if slots is None and rpm is None and tpm is None:
        raise InvalidInputError("give --slots, --rpm or --tpm")
    access = team.access or Access()
    team.access = Access(list(slots) if slots is not None else access.slots,
                         access.rpm if rpm is None else rpm, access.tpm if tpm is None else tpm)
    return library.save(name, team)
