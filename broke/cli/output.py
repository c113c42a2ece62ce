"""Rendering helpers shared by the command modules: consoles, JSON output, tables, the store."""
from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from broke.state.store import StateStore

# Core and rich modules are imported where used: read-only commands must start fast.

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


@cache
def _load_rich() -> None:
    """Import rich without attrs: rich.pretty imports attrs (~10 ms here) only to pretty-print attrs
    classes, which broke never prints; a None entry in sys.modules makes that optional import fail."""
    if "attr" in sys.modules or "rich.pretty" in sys.modules:
        return
    # typeshed types sys.modules as dict[str, ModuleType]; a None entry is the import system's documented block.
    sys.modules["attr"] = None  # type: ignore[assignment]
    try:
        import rich.console  # noqa: F401  (imports rich.pretty)
    finally:
        del sys.modules["attr"]


@cache
def console() -> Console:
    _load_rich()
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def store() -> StateStore:
    """The store of `$BROKE_HOME` (or the platform's app dir)."""
    from broke.state.store import StateStore

    return StateStore()


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def table(*columns: str, title: str | None = None) -> Table:
    _load_rich()
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def say(message: str) -> None:
    console().print(message)


def show(renderable: object) -> None:
    console().print(renderable)


def esc(text: str) -> str:
    """Escape rich markup in user-supplied text."""
    _load_rich()
    from rich.markup import escape

    return escape(text)


def one_line(message: str) -> str:
    """`message` on one line: control characters (a newline in a name, say) shown escaped, as Python would."""
    return "".join(repr(c)[1:-1] if c.isprintable() is False and c != " " else c for c in message.strip())


def warn(message: str) -> None:
    """Print one warning line on stderr (stdout keeps what the command prints)."""
    sys.stderr.write(f"broke: warning: {one_line(message)}\n")


def fail(message: str, code: int = 1) -> None:
    """Print one error line and exit with `code`."""
    sys.stderr.write(f"broke: error: {one_line(message)}\n")
    raise typer.Exit(code)


STATUS_STYLE = {"healthy": "green", "unknown": "dim", "cooldown": "yellow", "blocked": "red",
                "auth_failed": "red", "incompatible": "red"}


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"
