"""`node add|list|remove`: workers on other machines that join a local model's pool."""
from __future__ import annotations

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, store, table

node_app = typer.Typer(no_args_is_help=True, help="Workers on other machines (started there with "
                                                  "`broke worker start MODEL --host 0.0.0.0 --token T`).")


@node_app.command("add")
def node_add(name: str = typer.Argument(...),
             url: str | None = typer.Argument(None, help="The worker's API base, e.g. http://studio.local:8081/v1"),
             discovered: str | None = typer.Option(None, "--discovered", help="Take URL and model from the "
                                                   "announced worker of this name (`broke node discover`)."),
             model: str | None = typer.Option(None, "--model", help="Local model it serves (default: NAME)."),
             token_env: str | None = typer.Option(None, "--token-env", help="Variable holding its token."),
             machine: str | None = typer.Option(None, "--machine", help="Its machine id in baselines (its "
                                                "`export-baseline` record, imported here): weighs it by "
                                                "measured speed.")) -> None:
    """Add a remote worker; it joins the pool of backend mlx/MODEL (a running gateway uses it from the next request)."""
    from broke import changes
    from broke.errors import InvalidInputError, NotFoundError

    if (url is None) == (discovered is None):
        raise typer.BadParameter("give the worker's URL or --discovered NAME (one of them)")
    if discovered is not None:
        from broke.local.discovery import browse

        found = {f.name: f for f in browse()}
        if discovered not in found:
            raise NotFoundError(f"no worker '{discovered}' announced on the LAN; `broke node discover` lists them")
        if not token_env:
            raise InvalidInputError("discovery grants no access: give the worker's token with --token-env VAR")
        url, model = found[discovered].url, model or found[discovered].model
    assert url is not None
    state = changes.add_node(store(), name, url, model=model or name, token_env=token_env, machine=machine)
    say(f"node [bold]{esc(name)}[/] added to the pool of mlx/{esc(model or name)} "
        f"(generation {state.generation}); a running gateway sends it requests from now on")


@node_app.command("discover")
def node_discover(seconds: float = typer.Option(2.0, "--seconds", min=0.2, max=30, help="How long to listen."),
                  as_json: bool = JSON_OPTION) -> None:
    """Workers announced on the LAN (`broke worker start … --advertise`): name, model, URL, hardware."""
    from dataclasses import asdict

    from broke.local.discovery import browse

    found = browse(seconds)
    if as_json:
        print_json([asdict(f) for f in found])
        return
    if not found:
        say(f"no worker announced on the LAN within {seconds:g} s (multicast may be blocked on this network)")
        return
    t = table("name", "model", "url", "hardware")
    for f in found:
        t.add_row(esc(f.name), esc(f.model), esc(f.url), esc(f.hardware))
    show(t)
    say("[dim]`broke node add NODE --discovered NAME --token-env VAR` adds one (its token is still needed)[/]")


@node_app.command("list")
def node_list(as_json: bool = JSON_OPTION) -> None:
    """Remote workers and the pools they join."""
    from broke.catalog import local_backend_id
    from broke.state.schema import unstructure

    nodes = store().load().nodes
    if as_json:
        print_json({name: unstructure(node) for name, node in nodes.items()})
        return
    if not nodes:
        say("no nodes (`broke node add NAME URL`)")
        return
    t = table("node", "url", "pool", "token")
    for name, node in sorted(nodes.items()):
        t.add_row(esc(name), esc(node.url), esc(local_backend_id(node.model)), node.token_env or "-")
    show(t)


@node_app.command("remove")
def node_remove(name: str = typer.Argument(...)) -> None:
    """Remove a remote worker: a running gateway sends it no new request, those in flight finish."""
    from broke import changes

    state = changes.remove_node(store(), name)
    say(f"node [bold]{esc(name)}[/] removed (generation {state.generation})")


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
