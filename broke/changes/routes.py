"""A slot's whole route at once: its backend and its fallback chain in one write (one generation), as the
admin API's `PUT /admin/v1/slots/{slot}` sets them. Checked as `swap` and `fallback` check them."""
from __future__ import annotations

from broke.catalog import load_catalog
from broke.changes.slots import apply_fallbacks, check_backend, check_slot
from broke.errors import InvalidInputError
from broke.state.model import State
from broke.state.store import StateStore


def set_route(store: StateStore, slot: str, *, backend: str | None = None,
              fallbacks: list[str] | None = None) -> State:
    """Point `slot` at `backend` and/or replace its fallbacks; at least one of the two is given."""
    catalog = load_catalog()
    check_slot(slot, catalog)
    if backend is None and fallbacks is None:
        raise InvalidInputError("give a backend, fallbacks, or both")

    def apply(state: State) -> None:
        if backend is not None:
            check_backend(backend, state, catalog, slot)
            state.slots[slot].backend = backend
        if fallbacks is not None:
            apply_fallbacks(state, slot, fallbacks, catalog)

    return store.update(apply)[0]
