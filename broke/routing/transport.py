"""How one attempt travels: to a local worker, natively to the provider, translated by broke, or
through LiteLLM.

`route_for` is the one rule: the gateway follows it per attempt, `broke start` asks it whether any
slot needs LiteLLM, and `explain` prints it as "via". A request is native when the client's API is
one the backend's provider speaks itself (`native` in catalog.toml): chat completions to
OpenAI-compatible servers and clouds, Responses to OpenAI, Anthropic messages (and count_tokens)
to Anthropic. Chat completions to a local model with running workers go straight to a worker.
Messages and Responses requests to a backend that speaks chat completions (an OpenAI-compatible
server, OpenAI, a local model's worker) are translated by broke (gateway/translate) and sent as chat
completions (their count_tokens estimated by broke: the route's url is then empty); chat completions
and Responses requests to Anthropic are translated and sent as Anthropic messages.
Google generateContent requests (Gemini CLI) are translated to chat completions the same way, and
chained on to Anthropic messages; to any other backend they go to LiteLLM as chat completions.
Everything else goes through LiteLLM.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from broke.catalog import Backend, Catalog, Provider
from broke.keys import key_pool
from broke.routing.backends import api_base, backend_chain, endpoint, find_backend, key_variable
from broke.routing.resolve import Candidate
from broke.state.model import State

#: Client API of each path the front proxy serves.
API_OF_PATH = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "messages",
    "/v1beta/models:generateContent": "gemini",
    "/v1beta/models:streamGenerateContent": "gemini",
    "/v1beta/models:countTokens": "gemini",
}
#: The endpoint of each client API.
PATH_OF_API = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages",
               "gemini": "/v1beta/models:generateContent"}
#: The API each slot family's clients speak (Claude Code: messages; Codex: responses; others: chat).
FAMILY_API = {"claude": "messages", "codex": "responses", "gemini": "gemini"}
#: Providers whose own API a backend keeps at a custom api_base (a proxy or a test double of it).
OWN_API_AT_ANY_BASE = ("anthropic", "openai")
#: The model name mlx_lm.server answers to (any other makes it look on the hub).
WORKER_MODEL = "default_model"

Via = Literal["worker", "native", "translated", "litellm"]
#: Backend API -> the client APIs broke translates onto it itself (in order of preference).
TRANSLATES = {"chat": ("messages", "responses", "gemini"), "messages": ("chat", "responses", "gemini")}
COUNT_TOKENS = "/v1/messages/count_tokens"
#: Google's generateContent paths (the model is in the URL; the gateway passes it in the body).
GEMINI_GENERATE, GEMINI_STREAM, GEMINI_COUNT = (
    "/v1beta/models:generateContent", "/v1beta/models:streamGenerateContent", "/v1beta/models:countTokens")
#: Token counting: routed like a request, spending nothing.
COUNTING = (COUNT_TOKENS, GEMINI_COUNT)
#: How an attempt authenticates upstream: the provider key as a bearer token or as Anthropic's
#: x-api-key, a node's worker token, or LiteLLM's master key.
Auth = Literal["bearer", "x-api-key", "worker-token", "master-key"]


@dataclass(frozen=True)
class Route:
    """Where one attempt goes: by which way, to which URL, under which model name, authenticated how."""

    via: Via
    url: str
    model: str
    auth: Auth
    api: str = ""  # the API the backend is spoken to in (translated routes, and Gemini clients' LiteLLM routes)

    def translates(self, path: str) -> bool:
        """True when broke rewrites the request to `path` into another API for this attempt."""
        return bool(self.api) and self.api != API_OF_PATH.get(path)

    @property
    def through_litellm(self) -> bool:
        """True when LiteLLM carries the attempt (and translates between the client's API and the backend's)."""
        return self.via == "litellm"


def native_apis(backend: Backend, provider: Provider) -> tuple[str, ...]:
    """The client APIs `backend` answers natively. A backend with its own api_base is an
    OpenAI-compatible server (chat completions only), unless its provider is Anthropic or OpenAI."""
    if backend.api_base and provider.name not in OWN_API_AT_ANY_BASE:
        return ("chat",)
    return provider.native


def _native(path: str, backend: Backend, provider: Provider) -> Route | None:
    """How to forward `path` to `backend` directly, or None if it needs LiteLLM's translation."""
    api = API_OF_PATH.get(path)
    if api is None or api not in native_apis(backend, provider) or not api_base(backend, provider) \
            or provider.local:  # local: workers
        return None
    return Route("native", endpoint(backend, provider, path), backend.model,
                 "x-api-key" if api == "messages" else "bearer")


def _translated(path: str, backend: Backend, provider: Provider) -> Route | None:
    """How to send `path` to `backend` in another API, translated by broke, or None if broke cannot."""
    api = API_OF_PATH.get(path)
    if api is None or not api_base(backend, provider) or provider.local:
        return None
    for target, clients in TRANSLATES.items():
        if target in native_apis(backend, provider) and api in clients:
            url = "" if path in COUNTING else endpoint(backend, provider, PATH_OF_API[target])
            return Route("translated", url, backend.model, "x-api-key" if target == "messages" else "bearer", target)
    return None


def route_for(path: str, candidate: Candidate, catalog: Catalog, workers: Mapping[str, Sequence[str]], *,
              replica: str | None = None, native_forwarding: bool = True, litellm_url: str = "") -> Route:
    """The route of one attempt of a request to `path` (a client API endpoint) for `candidate`.

    `workers`: local backend -> its replicas' API bases; `replica` is the one the gateway picked
    (default the first). `native_forwarding` off sends everything but worker traffic to LiteLLM.
    """
    pool, api = workers.get(candidate.backend), API_OF_PATH.get(path)
    if api is not None and pool:  # a local model's worker speaks chat completions: the rest is translated
        url = "" if path in COUNTING else f"{replica or pool[0]}/chat/completions"
        return Route("worker" if api == "chat" else "translated", url, WORKER_MODEL, "worker-token", "chat")
    backend = candidate.definition
    provider = catalog.providers.get(candidate.provider)
    if native_forwarding and backend is not None and provider is not None:
        direct = _native(path, backend, provider) or _translated(path, backend, provider)
        if direct is not None:
            return direct
    if api == "gemini":  # LiteLLM is spoken to in chat completions, broke translates (a count is estimated)
        if path in COUNTING:
            return Route("translated", "", candidate.deployment, "master-key", "chat")
        return Route("litellm", litellm_url + PATH_OF_API["chat"], candidate.deployment, "master-key", "chat")
    return Route("litellm", litellm_url + path, candidate.deployment, "master-key")


def litellm_apis(backend: Backend, catalog: Catalog, workers: Mapping[str, Sequence[str]], *,
                    native_forwarding: bool = True) -> list[str]:
    """The client APIs whose requests to `backend` go through LiteLLM (its key and health aside)."""
    probe = Candidate(backend.id, backend.provider, None, True, "", backend.pinned, "unknown", "unknown",
                      definition=backend)
    return [api for api, path in PATH_OF_API.items()
            if route_for(path, probe, catalog, workers, native_forwarding=native_forwarding).through_litellm]


def litellm_needed(state: State, catalog: Catalog, workers: Mapping[str, Sequence[str]],
                   env: Mapping[str, str]) -> bool:
    """True if some slot's chain holds a backend that its clients' API reaches only through LiteLLM
    and that could answer: one whose key (if it needs one) is set in `env`.

    `broke start` starts LiteLLM (in the background) only then; a request that needs it later
    (a key added since) starts it on demand.
    """
    for slot in state.slots:
        api = FAMILY_API.get(catalog.family_of(slot), "chat")
        for backend_id, _ in backend_chain(slot, state)[0]:
            backend = find_backend(backend_id, state, catalog)
            prefix = key_variable(backend, catalog) if backend is not None else ""
            if prefix and not key_pool(prefix, env):
                continue  # it cannot answer: LiteLLM would start for nothing
            if backend is not None and backend.provider in catalog.providers \
                    and api in litellm_apis(backend, catalog, workers):
                return True
    return False
