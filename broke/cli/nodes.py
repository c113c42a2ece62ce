"""`node add|list|remove`: workers on other machines that join a local model's pool."""
from __future__ import annotations

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, store, table

node_app = typer.Typer(no_args_is_help=True, help="Workers on other machines (started there with "
                                                  "`broke worker start MODEL --host 0.0.0.0 --token T`).")


@node_app.command("add")
def node_add(name: str = typer.Argument(...),
             url: str = typer.Argument(..., help="The worker's API base, e.g. http://studio.local:8081/v1"),
             model: str | None = typer.Option(None, "--model", help="Local model it serves (default: NAME)."),
             token_env: str | None = typer.Option(None, "--token-env", help="Variable holding its token."),
             machine: str | None = typer.Option(None, "--machine", help="Its machine id in baselines (its "
                                                "`export-baseline` record, imported here): weighs it by "
                                                "measured speed.")) -> None:
    """Add a remote worker; it joins the pool of backend mlx/MODEL (a running gateway uses it from the next request)."""
    from broke import changes

    state = changes.add_node(store(), name, url, model=model or name, token_env=token_env, machine=machine)
    say(f"node [bold]{esc(name)}[/] added to the pool of mlx/{esc(model or name)} "
        f"(generation {state.generation}); a running gateway sends it requests from now on")


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
