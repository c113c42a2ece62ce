"""Local models and nodes. Each is one locked read-modify-write of the state store."""
from __future__ import annotations

import re

from broke.catalog import load_catalog, local_backend_id
from broke.changes.backends import ENV_NAME, is_http_url
from broke.errors import InvalidInputError, NotFoundError
from broke.routing.backends import find_backend
from broke.state.model import (
    CustomBackend,
    Node,
    State,
)
from broke.state.store import StateStore


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


def add_node(store: StateStore, name: str, url: str, *, model: str, token_env: str | None,
             machine: str | None = None) -> State:
    """A worker on another machine joins the pool of local model `model` (backend mlx/MODEL)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise InvalidInputError(f"node name '{name}' must be letters, digits, '.', '_' or '-'")
    if not is_http_url(url):
        raise InvalidInputError(f"node URL must be an http:// or https:// URL, got '{url}'")
    if token_env is not None and not ENV_NAME.fullmatch(token_env):
        raise InvalidInputError(f"--token-env must be an environment variable name, got '{token_env}'")
    if machine is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", machine):
        raise InvalidInputError(f"--machine must be a baseline machine id (letters, digits, '.', '_', '-'), "
                                f"got '{machine}'")
    backend_id = local_backend_id(model)

    def apply(state: State) -> None:
        if name in state.nodes:
            raise InvalidInputError(f"node '{name}' exists; `broke node remove {name}` first")
        if find_backend(backend_id, state, load_catalog()) is None:
            state.backends[backend_id] = CustomBackend("mlx", model, pinned=True)
        state.nodes[name] = Node(url.rstrip("/"), model, token_env, machine)

    return store.update(apply)[0]


def remove_node(store: StateStore, name: str) -> State:
    def apply(state: State) -> None:
        if name not in state.nodes:
            raise NotFoundError(f"unknown node '{name}'; see `broke node list`")
        del state.nodes[name]

    return store.update(apply)[0]
