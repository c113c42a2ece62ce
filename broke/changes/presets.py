"""Loading and saving teams and profiles. Each is one locked read-modify-write of the state store."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broke.catalog import Catalog, load_catalog
from broke.changes.costs import NO_BUDGET_CHANGE, BudgetChange
from broke.changes.slots import check_backend, check_slot
from broke.errors import BrokeError, InvalidInputError
from broke.presets import Profile, Team, profiles, teams
from broke.routing.backends import is_slot_reference
from broke.state.model import (
    Access,
    SlotConfig,
    State,
)
from broke.state.store import StateStore


def apply_team(state: State, name: str, team: Team, catalog: Catalog, source: Path) -> None:
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
    if team.access is not None:
        for slot in team.access.slots:
            check_slot(slot, catalog)
        state.access = Access(list(team.access.slots), team.access.rpm, team.access.tpm)
    state.active_team = name


def load_team(store: StateStore, name: str) -> State:
    entry = teams(store.home).get(name)
    catalog = load_catalog()
    return store.update(lambda s: apply_team(s, name, entry.preset, catalog, entry.path))[0]


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
            apply_team(state, team.name, team.preset, catalog, team.path)
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
    budget: BudgetChange = NO_BUDGET_CHANGE


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
    change.budget.check()
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
    change.budget.apply_to_profile(profile)
    return library.save(name, profile), created
