"""`backend add|remove`: custom backends (any OpenAI-compatible server, or a provider's unlisted model)."""
from __future__ import annotations

import typer

from broke.cli.output import esc, say, store

#: What users call each client API.
API_NAMES = {"chat": "chat completions", "responses": "Responses (Codex)",
             "messages": "Anthropic messages (Claude Code)", "gemini": "Google generateContent (Gemini CLI)"}

backend_app = typer.Typer(no_args_is_help=True, help="Add or remove custom backends; set a backend's prices.")

PRICE_IN = typer.Option(None, "--price-in", help="USD per million input tokens.")
PRICE_OUT = typer.Option(None, "--price-out", help="USD per million output tokens.")
PRICE_CACHE_READ = typer.Option(None, "--price-cache-read", help="USD per million tokens read from the cache.")
PRICE_CACHE_WRITE = typer.Option(None, "--price-cache-write", help="USD per million tokens written to the cache.")


@backend_app.command("add")
def backend_add(
    backend_id: str = typer.Argument(..., metavar="ID", help="New backend id, PROVIDER/MODEL style."),
    provider: str = typer.Option(..., "--provider", help="openai-compatible, openrouter, groq, …"),
    model: str = typer.Option(..., "--model", help="Model name the server expects."),
    api_base: str | None = typer.Option(None, "--api-base", help="Server URL, e.g. http://127.0.0.1:1234/v1"),
    key_env: str | None = typer.Option(None, "--key-env", help="Key variable (pools VAR, VAR_2, …)."),
    pinned: bool = typer.Option(False, "--pinned/--floating", help="Fixed model version, or an alias that can drift."),
    price_in: float | None = PRICE_IN,
    price_out: float | None = PRICE_OUT,
    price_cache_read: float | None = PRICE_CACHE_READ,
    price_cache_write: float | None = PRICE_CACHE_WRITE,
) -> None:
    """Register a custom backend (with its prices, where LiteLLM's price map does not know them)."""
    from broke import changes
    from broke.state.model import Price

    price = Price(price_in, price_out, price_cache_read, price_cache_write)
    state = changes.add_backend(store(), backend_id, provider=provider, model=model, api_base=api_base,
                                key_env=key_env, pinned=pinned, price=price)
    say(f"backend [bold]{esc(backend_id)}[/] added (generation {state.generation})")
    from broke.context import RoutingContext
    from broke.control.supervisor import status

    current = status(store().home)
    if current.running and current.record is not None:
        record = current.record
        unloaded = RoutingContext.load(store()).unloaded_apis(backend_id, record.deployments, record.direct_workers,
                                                              record.native_forwarding)
        if unloaded:
            say(f"[yellow]note:[/] the running gateway serves it at once where no translation is needed; "
                f"{', '.join(API_NAMES[api] for api in unloaded)} requests to it need `broke restart` "
                "(LiteLLM translates them)")


@backend_app.command("price")
def backend_price(
    backend_id: str = typer.Argument(..., metavar="ID"),
    price_in: float | None = PRICE_IN,
    price_out: float | None = PRICE_OUT,
    price_cache_read: float | None = PRICE_CACHE_READ,
    price_cache_write: float | None = PRICE_CACHE_WRITE,
) -> None:
    """Show a backend's prices, or set its own (the kinds given; the rest keep LiteLLM's price map)."""
    from broke.state.model import Price

    price = Price(price_in, price_out, price_cache_read, price_cache_write)
    if price != Price():
        from broke import changes

        state = changes.set_prices(store(), backend_id, price)
        say(f"prices of [bold]{esc(backend_id)}[/] set (generation {state.generation})")
    from broke.catalog import load_catalog
    from broke.changes import check_backend
    from broke.cost.prices import per_million, rates_for

    state = store().load()
    check_backend(backend_id, state, load_catalog())
    rates = rates_for(backend_id, state, load_catalog())
    if rates is None:
        say(f"{esc(backend_id)}: [yellow]unpriced[/] (LiteLLM's price map does not know it; "
            "set --price-in and --price-out)")
        return
    say(f"{esc(backend_id)}, USD per million tokens: " +
        ", ".join(f"{kind.replace('_', ' ')} {value:g}" for kind, value in per_million(rates).items()))


@backend_app.command("remove")
def backend_remove(backend_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Remove a custom backend that no slot uses any more."""
    from broke import changes

    state = changes.remove_backend(store(), backend_id)
    say(f"backend [bold]{esc(backend_id)}[/] removed (generation {state.generation})")


def register(app: typer.Typer) -> None:
    app.add_typer(backend_app, name="backend")
