"""The default sandbox profile of each client. One locked read-modify-write of the state store."""
from __future__ import annotations

from broke.sandbox.policy import DEFAULT_PROFILE, check_client, check_profile
from broke.state.model import State
from broke.state.store import StateStore


def set_default_sandbox(store: StateStore, client: str, profile: str) -> State:
    """`client` launches in `profile` unless `--sandbox` says otherwise (normal: the entry is removed)."""
    check_client(client)
    check_profile(profile)

    def apply(state: State) -> None:
        if profile == DEFAULT_PROFILE:
            state.sandbox.pop(client, None)
        else:
            state.sandbox[client] = profile

    return store.update(apply)[0]


def default_sandbox(state: State, client: str) -> str:
    """The profile `client` launches in when no `--sandbox` is given."""
    return state.sandbox.get(client, DEFAULT_PROFILE)
