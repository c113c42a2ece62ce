"""Which requests the gateway keeps outcome records of besides `auto`'s, and whether they keep the prompt's text."""
from __future__ import annotations

from broke.catalog import load_catalog
from broke.changes.slots import check_slot
from broke.errors import InvalidInputError
from broke.state.model import State
from broke.state.store import StateStore

#: What `RecordConfig.slots` holds for "every slot".
EVERY_SLOT = "*"


def check_record_slots(slots: list[str]) -> list[str]:
    """Known slot names, each once, in the order given (`auto` left out: it is always recorded), or
    [EVERY_SLOT] alone."""
    if EVERY_SLOT in slots:
        if len(slots) > 1:
            raise InvalidInputError(f"'{EVERY_SLOT}' (every slot) goes alone, not with other slots")
        return [EVERY_SLOT]
    catalog = load_catalog()
    return [check_slot(s, catalog) for s in dict.fromkeys(slots) if s != "auto"]


def set_recording(store: StateStore, slots: list[str] | None = None, prompt_text: bool | None = None) -> State:
    """Record requests to `slots` too (replacing the list; [] for `auto` alone, [EVERY_SLOT] for every slot)
    and/or keep (or stop keeping) the prompt's text with new records; None leaves that part as it is."""
    if slots is None and prompt_text is None:
        raise InvalidInputError("nothing to change: give the slots to record or whether to keep prompt text")
    checked = None if slots is None else check_record_slots(slots)

    def apply(state: State) -> None:
        if checked is not None:
            state.router.record.slots = checked
        if prompt_text is not None:
            state.router.record.prompt_text = prompt_text

    return store.update(apply)[0]
