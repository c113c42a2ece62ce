"""What a backend's tokens cost: LiteLLM's model price map (the JSON file the installed LiteLLM package
ships, read without importing LiteLLM), under the backend's own prices from the state. Local workers and
OpenRouter's `:free` models cost nothing; a backend with no known price is unpriced (None), never free."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from broke.catalog import Catalog
from broke.cost.usage import Usage
from broke.routing.backends import find_backend, is_local
from broke.state.model import Price, State

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Rates:
    """USD per token of each kind."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, usage: Usage) -> float:
        return (usage.input * self.input + usage.output * self.output + usage.cache_read * self.cache_read
                + usage.cache_write * self.cache_write)


FREE = Rates(0.0, 0.0, 0.0, 0.0)


def price_map_path() -> Path | None:
    """Where the installed LiteLLM keeps its price map (found, not imported); None without LiteLLM."""
    spec = importlib.util.find_spec("litellm")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / PRICE_MAP_FILE
        if path.is_file():
            return path
    return None


@cache
def price_map() -> dict[str, dict[str, Any]]:
    """LiteLLM's price map, read once per process ({} when LiteLLM or its file is missing or unreadable)."""
    path = price_map_path()
    if path is None:
        return {}
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(entry: dict[str, Any], name: str) -> float | None:
    value = entry.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def map_rates(provider: str, model: str, catalog: Catalog, prices: dict[str, dict[str, Any]]) -> Rates | None:
    """A model's rates in the price map, under its LiteLLM name, its bare name, or provider/model."""
    known = catalog.providers.get(provider)
    names = [f"{known.litellm_prefix}/{model}" if known else "", model, f"{provider}/{model}"]
    for name in names:
        entry = prices.get(name)
        if not isinstance(entry, dict):
            continue
        given, taken = _number(entry, "input_cost_per_token"), _number(entry, "output_cost_per_token")
        if given is None or taken is None:
            continue
        read = _number(entry, "cache_read_input_token_cost")
        written = _number(entry, "cache_creation_input_token_cost")
        return Rates(given, taken, given if read is None else read, given if written is None else written)
    return None


def with_override(base: Rates | None, own: Price | None) -> Rates | None:
    """The map's rates under a backend's own prices (per million); unpriced unless input and output are known."""
    if own is None:
        return base
    given = own.input / PER_MILLION if own.input is not None else base.input if base else None
    taken = own.output / PER_MILLION if own.output is not None else base.output if base else None
    if given is None or taken is None:
        return None
    read = own.cache_read / PER_MILLION if own.cache_read is not None else base.cache_read if base else given
    written = own.cache_write / PER_MILLION if own.cache_write is not None else base.cache_write if base else given
    return Rates(given, taken, read, written)


def rates_for(backend_id: str, state: State, catalog: Catalog) -> Rates | None:
    """What a backend's tokens cost (None: unpriced); local workers are free unless given prices."""
    backend = find_backend(backend_id, state, catalog)
    if backend is None:
        return None
    own = state.prices.get(backend_id)
    if is_local(backend.provider, catalog) or (backend.provider == "openrouter" and backend.model.endswith(":free")):
        return with_override(FREE, own)  # a local worker; one of OpenRouter's free models
    return with_override(map_rates(backend.provider, backend.model, catalog, price_map()), own)


def per_million(rates: Rates) -> dict[str, float]:
    """Rates as people read them: USD per million tokens of each kind."""
    return {kind: round(getattr(rates, kind) * PER_MILLION, 6)
            for kind in ("input", "output", "cache_read", "cache_write")}


#: The request that surfaces without one (`explain`, `list`) price candidates for: tokens in, tokens out.
NOMINAL_REQUEST = (1000, 500)
#: Characters per token, roughly, for a request's expected input.
CHARS_PER_TOKEN = 4


def request_tokens(body_size: int, payload: dict[str, Any]) -> tuple[int, int]:
    """A request's expected tokens: its body's size for input, the output limit it asks for (else nominal)."""
    limits = [payload.get(f) for f in ("max_tokens", "max_completion_tokens", "max_output_tokens")]
    given = [n for n in limits if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    return body_size // CHARS_PER_TOKEN, given[0] if given else NOMINAL_REQUEST[1]


def request_cost(state: State, catalog: Catalog, tokens: tuple[int, int]) -> Callable[[str], float | None]:
    """What a request of `tokens` (in, out) is expected to cost on a backend (None: unpriced): model policy
    `cheapest` orders candidates by it."""
    usage = Usage(*tokens)

    def cost(backend_id: str) -> float | None:
        rates = rates_for(backend_id, state, catalog)
        return rates.cost(usage) if rates else None

    return cost
