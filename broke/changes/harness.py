"""Harness mode's defaults: the review policy and the lanes' slots. One locked read-modify-write each."""
from __future__ import annotations

from broke.catalog import load_catalog
from broke.changes.slots import check_slot
from broke.errors import UsageProblem
from broke.harness.verdict import check_policy
from broke.state.model import State
from broke.state.store import StateStore


def set_harness_policy(store: StateStore, policy: str) -> State:
    """Runs are reviewed under `policy` unless `--policy` says otherwise."""
    check_policy(policy)

    def apply(state: State) -> None:
        state.harness.policy = policy

    return store.update(apply)[0]


def set_lanes(store: StateStore, *, verifier: str | None, adversary: str | None) -> State:
    """The slots the verifier and adversary lanes ask (None: unchanged)."""
    if verifier is None and adversary is None:
        raise UsageProblem("nothing to change; give --verifier SLOT and/or --adversary SLOT")
    catalog = load_catalog()
    for slot in (verifier, adversary):
        if slot is not None:
            check_slot(slot, catalog)

    def apply(state: State) -> None:
        if verifier is not None:
            state.harness.verifier = verifier
        if adversary is not None:
            state.harness.adversary = adversary

    return store.update(apply)[0]
