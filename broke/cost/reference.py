"""What savings are measured against: each slot's reference backend, by default its backend in the shipped
cloud team that local routing replaces, else the one `broke cost reference SLOT BACKEND` set."""
from __future__ import annotations

from pathlib import Path

from broke.errors import BrokeError
from broke.presets import teams
from broke.state.model import State

#: The shipped team whose backends a slot's answers are priced against unless told otherwise.
REFERENCE_TEAM = "cloud-direct"


def default_references(home: Path) -> dict[str, str]:
    """Slot -> backend of the reference team ({} if it cannot be read)."""
    try:
        team = teams(home).get(REFERENCE_TEAM).preset
    except BrokeError:
        return {}
    return {slot: config.backend for slot, config in team.slots.items()}


def reference_for(slot: str, state: State, defaults: dict[str, str]) -> str | None:
    """The backend a slot's answers are priced against (None: no reference)."""
    return state.cost_reference.get(slot) or defaults.get(slot)
