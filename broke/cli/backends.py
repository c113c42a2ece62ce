"""`backend add|remove`: custom backends (any OpenAI-compatible server, or a provider's unlisted model)."""
from __future__ import annotations

import typer

from broke.cli.output import esc, say, store

#: What users call each client API.
API_NAMES = {"chat": "chat completions", "responses": "Responses (Codex)",
             "messages": "Anthropic messages (Claude Code)"}

backend_app = typer.Typer(no_args_is_help=True, help="Add or remove custom backends.")


@backend_app.command("add")
def backend_add(
    backend_id: str = typer.Argument(..., metavar="ID", help="New backend id, PROVIDER/MODEL style."),
    provider: str = typer.Option(..., "--provider", help="openai-compatible, openrouter, groq, …"),
    model: str = typer.Option(..., "--model", help="Model name the server expects."),
    api_base: str | None = typer.Option(None, "--api-base", help="Server URL, e.g. http://127.0.0.1:1234/v1"),
    key_env: str | None = typer.Option(None, "--key-env", help="Key variable (pools VAR, VAR_2, …)."),
    pinned: bool = typer.Option(False, "--pinned/--floating", help="Fixed model version, or an alias that can drift."),
) -> None:
    """Register a custom backend."""
    from broke import changes

    state = changes.add_backend(store(), backend_id, provider=provider, model=model, api_base=api_base,
                                key_env=key_env, pinned=pinned)
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


@backend_app.command("remove")
def backend_remove(backend_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Remove a custom backend that no slot uses any more."""
    from broke import changes

    state = changes.remove_backend(store(), backend_id)
    say(f"backend [bold]{esc(backend_id)}[/] removed (generation {state.generation})")


def register(app: typer.Typer) -> None:
    app.add_typer(backend_app, name="backend")
