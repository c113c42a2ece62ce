"""`list`, `models`, `swap`, `fallback`: the slot mapping."""
from __future__ import annotations

import typer

from broke.cli.output import JSON_OPTION, esc, fail, print_json, say, show, status_text, store, table
from broke.errors import InvalidInputError, UsageProblem


def list_slots(as_json: bool = JSON_OPTION) -> None:
    """Show every slot: its backend, fallbacks and what a request would get now."""
    from broke.context import RoutingContext
    from broke.local.demo import NEXT_STEP
    from broke.local.models import DEMO_BACKEND

    ctx = RoutingContext.load(store())
    state = ctx.state
    rows = [row for row, _ in ctx.slot_rows()]
    if as_json:
        print_json({"generation": state.generation, "active_team": state.active_team,
                    "active_profile": state.active_profile, "frozen": state.frozen, "slots": rows})
        return
    flags = [f"generation {state.generation}", f"team {state.active_team or '-'}",
             f"profile {state.active_profile or '-'}"] + (["[bold red]FROZEN[/]"] if state.frozen else [])
    say(" · ".join(flags))
    t = table("slot", "family", "backend", "fallbacks", "now answers")
    for row in rows:
        answer = esc(row["chosen"]) if row["chosen"] else f"[red]none[/] [dim]({esc(row['reason'])})[/]"
        demo = " [yellow](demo)[/]" if row["backend"] == DEMO_BACKEND else ""
        t.add_row(row["slot"] + (" [dim](pinned)[/]" if row["pinned"] else ""), row["family"],
                  esc(row["backend"]) + demo, esc(", ".join(row["fallbacks"])) or "-", answer)
    if any(row["backend"] == DEMO_BACKEND for row in rows):
        say(f"[yellow]demo:[/] {esc(NEXT_STEP)}")
    show(t)


def list_models(as_json: bool = JSON_OPTION) -> None:
    """Show the known and custom backends, pinned or floating, and whether their keys are set."""
    from broke.context import RoutingContext
    from broke.keys import key_pool
    from broke.routing.backends import find_backend, key_variable

    ctx = RoutingContext.load(store())
    catalog, state = ctx.catalog, ctx.state
    models = []  # (id, backend, key variable or None, keys set or None, health)
    for backend_id in [*catalog.backends, *sorted(state.backends)]:
        backend = find_backend(backend_id, state, catalog)
        assert backend is not None  # a backend of the catalog or the state is always found
        key_env = key_variable(backend, catalog)
        keys_set = len(key_pool(key_env, ctx.env)) if key_env else None
        models.append((backend_id, backend, key_env or None, keys_set, ctx.health.model_status(backend_id, ctx.now)))
    if as_json:
        print_json([{
            "id": backend_id,
            "provider": backend.provider,
            "model": backend.model,
            "pinned": backend.pinned,
            "custom": backend.custom,
            "api_base": backend.api_base,
            "key_env": key_var,
            "keys_set": keys_set,
            "health": health,
        } for backend_id, backend, key_var, keys_set, health in models])
        return
    t = table("backend", "provider", "version", "key", "health")
    for backend_id, backend, key_var, keys_set, health in models:
        if key_var is None:
            key = "[dim]not needed[/]"
        elif keys_set:
            key = f"[green]{key_var} ×{keys_set}[/]"
        else:
            key = f"[red]{key_var} missing[/]"
        version = "pinned" if backend.pinned else "[yellow]floating[/]"
        t.add_row(esc(backend_id) + (" [dim](custom)[/]" if backend.custom else ""),
                  backend.provider, version, key, status_text(health))
    show(t)


def _pick_interactively() -> list[tuple[str, str]]:
    """Ask for a slot and a backend by number (rich prompts)."""
    from rich.prompt import Prompt

    from broke.catalog import load_catalog

    catalog = load_catalog()
    slots = list(catalog.slots)
    for number, slot in enumerate(slots, start=1):
        say(f"  {number:>2}. {slot}")
    try:
        slot = slots[int(Prompt.ask("slot", choices=[str(i) for i in range(1, len(slots) + 1)])) - 1]
        state = store().load()
        backends = [*catalog.backends, *sorted(state.backends)]
        for number, backend_id in enumerate(backends, start=1):
            marker = " [dim](current)[/]" if backend_id == state.slots[slot].backend else ""
            say(f"  {number:>2}. {esc(backend_id)}{marker}")
        choice = Prompt.ask("backend", choices=[str(i) for i in range(1, len(backends) + 1)],
                            show_choices=False)
    except EOFError:
        raise InvalidInputError("no selection made (stdin closed)") from None
    return [(slot, backends[int(choice) - 1])]


def _parse_swap(args: list[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """(team, []) for `swap TEAM`; (None, assignments) for `SLOT BACKEND` or `SLOT=BACKEND …`."""
    if len(args) == 1 and "=" not in args[0]:
        return args[0], []
    if len(args) == 2 and not any("=" in a for a in args):
        return None, [(args[0], args[1])]
    if all("=" in a for a in args):
        pairs = [(slot, backend) for slot, _, backend in (a.partition("=") for a in args)]
        if any(not slot or not backend for slot, backend in pairs):
            raise UsageProblem("each assignment must look like SLOT=BACKEND")
        return None, pairs
    raise UsageProblem("use `swap TEAM`, `swap SLOT BACKEND` or `swap SLOT=BACKEND …`")


def swap(
    args: list[str] | None = typer.Argument(None, metavar="[TEAM | SLOT BACKEND | SLOT=BACKEND…]"),
) -> None:
    """Change what slots route to: a whole team, one slot, or many at once (no args: pick interactively)."""
    from broke import changes

    team, assignments = _parse_swap(args) if args else (None, _pick_interactively())
    if team is not None:
        state = changes.load_team(store(), team)
        say(f"team [bold]{esc(team)}[/] loaded (generation {state.generation})")
        return
    state = changes.swap(store(), assignments)
    for slot, backend in assignments:
        say(f"{slot} → [bold]{esc(backend)}[/]")
    say(f"[dim]generation {state.generation}[/]")


def fallback(
    slot: str = typer.Argument(..., help="The slot whose fallback chain to set or show."),
    entries: list[str] | None = typer.Argument(None, metavar="[FALLBACK…]",
                                               help="Backend ids or slot names, in order."),
    clear: bool = typer.Option(False, "--clear", help="Remove the slot's fallbacks."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set (or with no FALLBACK show) a slot's fallback chain; `--clear` empties it."""
    from broke import changes
    from broke.catalog import load_catalog

    if clear and entries:
        fail("give fallbacks or --clear, not both", 2)
    if not clear and not entries:
        state = store().load()
        current = state.slots[changes.check_slot(slot, load_catalog())].fallbacks
        if as_json:
            print_json({"slot": slot, "fallbacks": current})
        else:
            say(f"{slot}: {esc(' → '.join(current)) if current else 'no fallbacks'}")
        return
    state = changes.set_fallbacks(store(), slot, [] if clear else list(entries or []))
    chain = state.slots[slot].fallbacks
    say(f"{slot} falls back to: {esc(' → '.join(chain)) if chain else 'nothing'} "
        f"[dim](generation {state.generation})[/]")


def register(app: typer.Typer) -> None:
    app.command("list")(list_slots)
    app.command("models")(list_models)
    app.command("swap")(swap)
    app.command("fallback")(fallback)
