"""`snapshot save|list|restore` and `freeze`."""
from __future__ import annotations

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, store, table, warn
from broke.errors import UsageProblem

snapshot_app = typer.Typer(no_args_is_help=True, help="Save and restore copies of the state (last 20 kept).")


@snapshot_app.command("save")
def snapshot_save(note: str = typer.Option("", "--note", "-n", help="Why this snapshot was taken.")) -> None:
    """Save a snapshot of the current state."""
    from broke.state.store import SnapshotStore

    info = SnapshotStore(store()).save(note)
    say(f"snapshot [bold]{info.id}[/] saved (generation {info.generation})")


@snapshot_app.command("list")
def snapshot_list(as_json: bool = JSON_OPTION) -> None:
    """List snapshots, oldest first."""
    from broke.state.schema import unstructure
    from broke.state.store import SnapshotStore

    infos, problems = SnapshotStore(store()).list()
    for problem in problems:
        warn(f"skipped {problem}")
    if as_json:
        print_json([unstructure(i) for i in infos])
        return
    t = table("id", "created (UTC)", "generation", "team", "note")
    for i in infos:
        t.add_row(str(i.id), i.created_at, str(i.generation), esc(i.team) or "-", esc(i.note))
    show(t)


@snapshot_app.command("restore")
def snapshot_restore(snapshot_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Make snapshot ID the current state (the current one is snapshotted first)."""
    from broke.state.store import SnapshotStore

    state, info, aside = SnapshotStore(store()).restore(snapshot_id)
    say(f"snapshot [bold]{info.id}[/] restored (generation {state.generation})")
    if aside is not None:
        say(f"the damaged state file was kept as {esc(str(aside))}")


def freeze(switch: str | None = typer.Argument(None, metavar="[on|off]"),
           as_json: bool = JSON_OPTION) -> None:
    """Show, or turn on/off, the freeze that blocks every state-changing command."""
    from broke import changes

    if switch is None:
        frozen = store().load().frozen
        if as_json:
            print_json({"frozen": frozen})
            return
        say("state is [bold red]frozen[/]" if frozen else "state is not frozen")
        return
    if switch not in ("on", "off"):
        raise UsageProblem(f"freeze takes 'on' or 'off', got '{switch}'")
    state = changes.set_frozen(store(), switch == "on")
    say(f"freeze {switch} (generation {state.generation})")


def register(app: typer.Typer) -> None:
    app.add_typer(snapshot_app, name="snapshot")
    app.command("freeze")(freeze)
