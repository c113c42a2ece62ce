"""The offline demo: a fresh home with no provider keys routes every slot to a tiny local model."""
from __future__ import annotations

from pathlib import Path

from broke.catalog import load_catalog
from broke.keys import key_pool, provider_env
from broke.local.models import DEMO_BACKEND
from broke.state.store import StateStore

DEMO_TEAM = "demo"
NEXT_STEP = ("this is broke's offline demo model, not a real one: add a model (`broke local add PATH|REPO`) "
             "or a provider key (e.g. OPENROUTER_API_KEY in $BROKE_HOME/.env), then `broke swap`")


def has_provider_keys(home: Path) -> bool:
    env = provider_env(home / ".env")
    return any(key_pool(p.key_env, env) for p in load_catalog().providers.values() if p.key_env)


def route_fresh_home_to_demo(home: Path) -> bool:
    """On a home without a state file and without provider keys, load the demo team; True if it did."""
    store = StateStore(home)
    if store.path.exists() or has_provider_keys(home):
        return False
    from broke.changes import load_team

    load_team(store, DEMO_TEAM)
    return True


def is_demo(backend_id: str) -> bool:
    return backend_id == DEMO_BACKEND
