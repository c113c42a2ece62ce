"""Render the LiteLLM proxy config from the state: one deployment per backend × key.

Keys are referenced as `os.environ/NAME`, never written into the file. broke owns retries,
fallbacks and cooldowns, so LiteLLM's own are switched off.

With an Anthropic deployment, LiteLLM may adapt requests to what Anthropic accepts (`modify_params`):
a Responses client such as Codex gets its reasoning streamed without the signed original (no
`encrypted_content`) and sends it back empty, and Anthropic refuses a follow-up whose tool call
carries no thinking while thinking is on; LiteLLM then sends that turn without thinking. The switch
is global in LiteLLM (1.106 has no per-deployment one), so it is on only when some deployment speaks
Anthropic's API.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broke.catalog import Backend, Catalog, local_backend_id
from broke.keys import key_pool
from broke.routing.backends import api_base, find_backend, is_local, key_variable
from broke.state.model import State

#: What a key-less OpenAI-compatible server gets as its key (LiteLLM insists on one).
NO_KEY = "not-needed"


@dataclass(frozen=True)
class Deployment:
    """One LiteLLM model entry: the name the front proxy asks for, and how LiteLLM reaches it."""

    name: str  # backend id, or backend id@KEY_VAR
    backend: str
    key_env: str | None
    litellm_params: dict


def _litellm_model(backend: Backend, catalog: Catalog) -> str:
    provider = catalog.providers[backend.provider]
    if is_local(backend.provider, catalog):
        return "hosted_vllm/default_model"  # mlx_lm.server answers only to this name (or its path)
    if provider.needs_api_base:
        # OpenAI-compatible servers: hosted_vllm/ keeps /v1/messages and /v1/responses on chat completions.
        return f"hosted_vllm/{backend.model}"
    # A provider's own API, at its address or at the backend's (a gateway speaking that API).
    return f"{provider.litellm_prefix}/{backend.model}"


def _pool_members(backend_id: str, state: State, local_bases: Mapping[str, list[str]]) -> list[tuple[str, str | None]]:
    """(api_base, key variable) of every worker serving a local model: this machine's and nodes'."""
    members: list[tuple[str, str | None]] = [(base, None) for base in local_bases.get(backend_id, [])]
    members += [(node.url, node.token_env) for node in state.nodes.values()
                if local_backend_id(node.model) == backend_id]
    return members


def deployments(state: State, catalog: Catalog, env: Mapping[str, str],
                local_bases: Mapping[str, list[str]] | None = None) -> list[Deployment]:
    """Every deployment the gateway can serve now: known and custom backends × the keys that are set.

    A local model gets one deployment per worker (this machine's, `local_bases`: backend id ->
    api_bases, and nodes'), all under the backend's name: LiteLLM balances that pool. Backends that
    need an address they do not have are left out.
    """
    out = []
    for backend_id in [*catalog.backends, *state.backends]:
        backend = find_backend(backend_id, state, catalog)
        provider = catalog.providers.get(backend.provider) if backend else None
        if backend is None or provider is None:
            continue
        if is_local(backend.provider, catalog):
            for worker_base, key_env in _pool_members(backend_id, state, local_bases or {}):
                if key_env and key_env not in env:
                    continue  # a node whose token is not set here cannot be reached
                worker = {"model": _litellm_model(backend, catalog), "api_base": worker_base,
                          "use_chat_completions_api": True,
                          "api_key": f"os.environ/{key_env}" if key_env else NO_KEY}
                out.append(Deployment(backend_id, backend_id, None, worker))
            continue
        if provider.needs_api_base and not backend.api_base:
            continue
        params: dict = {"model": _litellm_model(backend, catalog)}
        if backend.api_base:
            params["api_base"] = api_base(backend, provider)
        if provider.needs_api_base:
            # Such servers speak chat completions only: /v1/responses is bridged onto it.
            params["use_chat_completions_api"] = True
        prefix = key_variable(backend, catalog)
        if not prefix:
            out.append(Deployment(backend_id, backend_id, None, {**params, "api_key": NO_KEY}))
            continue
        for key_env in key_pool(prefix, env):
            out.append(Deployment(f"{backend_id}@{key_env}", backend_id, key_env,
                                  {**params, "api_key": f"os.environ/{key_env}"}))
    return out


def _capabilities(deployment: Deployment) -> dict:
    """What LiteLLM is told a deployment can do beyond its own model map.

    OpenAI-compatible servers and local workers are not taken for reasoning models. A provider's
    own models are left to LiteLLM's map, which knows which of them think: overriding it there drops
    the thinking clients ask for.
    """
    return {"supports_reasoning": False} if deployment.litellm_params["model"].startswith("hosted_vllm/") else {}


def _speaks_anthropic(deployment: Deployment) -> bool:
    """True for a deployment LiteLLM sends to Anthropic's own API."""
    return str(deployment.litellm_params["model"]).startswith("anthropic/")


def render(items: list[Deployment], *, request_timeout_s: float) -> dict:
    """The LiteLLM proxy config (written as JSON, which LiteLLM's YAML loader reads)."""
    adapted = {"modify_params": True} if any(_speaks_anthropic(d) for d in items) else {}
    return {
        "model_list": [
            {
                "model_name": d.name,
                "litellm_params": {**d.litellm_params, "max_retries": 0, "timeout": request_timeout_s},
                "model_info": {"id": f"{d.name}#{number}", **_capabilities(d)},
            }
            for number, d in enumerate(items)
        ],
        "litellm_settings": {
            "drop_params": True,
            "num_retries": 0,
            "request_timeout": request_timeout_s,
            "use_chat_completions_url_for_anthropic_messages": True,
            "telemetry": False,
            **adapted,
        },
        "router_settings": {"num_retries": 0, "disable_cooldowns": True, "retry_after": 0,
                            "routing_strategy": "least-busy"},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }
