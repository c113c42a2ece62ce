"""Which requests the front proxy forwards itself, and how: no LiteLLM hop where no translation is needed.

A request is native when the client's API is one the backend's provider speaks itself (see `native`
in catalog.toml): OpenAI chat completions to OpenAI-compatible servers and clouds, the Responses API
to OpenAI, Anthropic messages (and count_tokens) to Anthropic. Everything else goes through LiteLLM.
"""
from __future__ import annotations

from dataclasses import dataclass

from broke.catalog import Backend, Catalog, Provider
from broke.resolver import backend_chain, find_backend
from broke.state.model import State

#: Client API of each path the front proxy serves.
API_OF_PATH = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "messages",
}
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class NativeRoute:
    """Where one native attempt goes and how it authenticates."""

    url: str
    model: str
    auth_header: str  # "authorization" (Bearer) or "x-api-key"


#: Providers whose own API a backend keeps at a custom api_base (a proxy or a test double of it).
OWN_API_AT_ANY_BASE = ("anthropic", "openai")


def native_apis(backend: Backend, provider: Provider) -> tuple[str, ...]:
    """The client APIs `backend` answers natively. A backend with its own api_base is an
    OpenAI-compatible server (chat completions only), unless its provider is Anthropic or OpenAI."""
    if backend.api_base and provider.name not in OWN_API_AT_ANY_BASE:
        return ("chat",)
    return provider.native


def native_route(path: str, backend: Backend, provider: Provider) -> NativeRoute | None:
    """How to forward `path` to `backend` directly, or None if it needs LiteLLM's translation."""
    api = API_OF_PATH.get(path)
    base = (backend.api_base or provider.api_base).rstrip("/")
    if api is None or api not in native_apis(backend, provider) or not base or provider.local:
        return None
    if api == "messages":
        root = base[: -len("/v1")] if base.endswith("/v1") else base
        return NativeRoute(root + path, backend.model, "x-api-key")
    return NativeRoute(base + path.removeprefix("/v1"), backend.model, "authorization")


def auth_headers(route: NativeRoute, key: str | None, client_headers: dict[str, str]) -> dict[str, str]:
    """The upstream's own authentication (never the client's broke token) and API version."""
    headers = {k: v for k, v in client_headers.items() if k not in ("authorization", "x-api-key")}
    if key:
        headers[route.auth_header] = key if route.auth_header == "x-api-key" else f"Bearer {key}"
    if route.auth_header == "x-api-key":
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    return headers


#: The API each slot family's clients speak (Claude Code: messages; Codex: responses; others: chat).
FAMILY_API = {"claude": "messages", "codex": "responses"}


def litellm_needed(state: State, catalog: Catalog) -> bool:
    """True if some slot's chain holds a backend that its clients' API cannot reach natively.

    `broke start` starts LiteLLM (in the background) only then; a request that needs it later
    starts it on demand.
    """
    for slot in state.slots:
        api = FAMILY_API.get(catalog.family_of(slot), "chat")
        for backend_id, _ in backend_chain(slot, state)[0]:
            backend = find_backend(backend_id, state, catalog)
            provider = catalog.providers.get(backend.provider) if backend else None
            if backend is None or provider is None:
                continue
            if api not in native_apis(backend, provider):
                return True
    return False
