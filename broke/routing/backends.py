"""Backend lookups and the small rules every surface shares: which backend an id names, the chain a
slot follows, the key variable a backend uses, its address, a deployment's name, and what counts as local."""
from __future__ import annotations

from broke.catalog import Backend, Catalog, Provider, local_model_name
from broke.state.model import TIERS, State


def find_backend(backend_id: str, state: State, catalog: Catalog) -> Backend | None:
    """A custom backend of the state, else a known backend of the catalog."""
    custom = state.backends.get(backend_id)
    if custom is not None:
        return Backend(
            id=backend_id, provider=custom.provider, model=custom.model, pinned=custom.pinned,
            api_base=custom.api_base, key_env=custom.key_env, custom=True,
        )
    return catalog.backends.get(backend_id)


def key_variable(backend: Backend, catalog: Catalog) -> str:
    """The key variable (prefix of its pool) a backend authenticates with; "" when it needs none."""
    if backend.key_env is not None:
        return backend.key_env
    provider = catalog.providers.get(backend.provider)
    return provider.key_env if provider else ""


def speaks_anthropic(provider: Provider) -> bool:
    """True for a provider whose own API is Anthropic's (Messages)."""
    return "messages" in provider.native


def api_base(backend: Backend, provider: Provider) -> str:
    """A backend's address (its own, else its provider's) in the form its provider's API expects,
    without a trailing slash: Anthropic's API is kept at the root (its paths carry their version,
    `/v1/messages`), so a base given as `…/v1`, the form OpenAI-style addresses take, loses that
    suffix; any other API's base keeps its version path. The front proxy, LiteLLM's config and the
    doctor's checks all use this one form."""
    base = (backend.api_base or provider.api_base).rstrip("/")
    return base.removesuffix("/v1") if speaks_anthropic(provider) else base


def endpoint(backend: Backend, provider: Provider, path: str) -> str:
    """The URL of a client API path (`/v1/…`) at a backend: appended whole to a root-kept base
    (Anthropic's), without its `/v1` to a base that carries the version."""
    base = api_base(backend, provider)
    return base + path if speaks_anthropic(provider) else base + path.removeprefix("/v1")


def deployment_name(backend_id: str, key_env: str | None) -> str:
    """The name of one backend × key deployment (what LiteLLM's config and the logs call it)."""
    return f"{backend_id}@{key_env}" if key_env else backend_id


def is_local(provider: str, catalog: Catalog) -> bool:
    """True for backends served by broke's own MLX workers (on this Mac or on nodes)."""
    known = catalog.providers.get(provider)
    return bool(known and known.local)


def worker_model(backend_id: str, provider: str, catalog: Catalog) -> str | None:
    """The worker name of a local backend (`mlx/NAME` -> NAME); None for other providers."""
    return local_model_name(backend_id) if is_local(provider, catalog) else None


def is_slot_reference(entry: str) -> bool:
    """Fallback entries without a '/' name another slot, whose chain is followed."""
    return "/" not in entry


def backend_chain(slot: str, state: State) -> tuple[list[tuple[str, str]], list[str]]:
    """The slot's backends in chain order as (backend id, source), following slot references.

    Returns the chain and notes on problems (cycles, unknown slot references).
    """
    chain: list[tuple[str, str]] = []
    notes: list[str] = []

    def follow(current: str, path: list[str], source: str) -> None:
        config = state.slots[current]
        entries = [(config.backend, source or "primary")]
        entries += [(fb, source or "fallback") for fb in config.fallbacks]
        for entry, entry_source in entries:
            if not is_slot_reference(entry):
                if entry not in (b for b, _ in chain):
                    chain.append((entry, entry_source))
            elif entry in path:
                notes.append("fallback cycle: " + " -> ".join([*path, entry]))
            elif entry not in state.slots:
                notes.append(f"fallback of slot '{current}' names unknown slot '{entry}'")
            else:
                follow(entry, [*path, entry], f"via slot {entry}")

    follow(slot, [slot], "")
    return chain, notes


def routes_by_complexity(slot: str, state: State) -> bool:
    """`auto` always picks a tier per prompt; other slots when configured with router = "complexity"."""
    return slot == "auto" or state.slots[slot].router == "complexity"


def tier_chain(tier: str, state: State) -> list[tuple[str, str]]:
    """A tier's backends, then the tiers above it (a tier that is all down falls back upwards)."""
    chain: list[tuple[str, str]] = []
    for name in TIERS[TIERS.index(tier):]:
        for backend_id in state.router.tiers.get(name, []):
            if backend_id not in (b for b, _ in chain):
                chain.append((backend_id, f"tier {name}"))
    return chain
