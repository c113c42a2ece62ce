"""The `broke` app: knows which module has each command, loads it only when the command runs, and maps
every error to one line and an exit code."""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import typer
import typer.main
from typer._click import Command
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from broke import __version__
from broke.errors import BrokeError

# Every top-level command and the module of broke.cli whose `register` adds it, in `broke --help` order
# (Typer lists commands before groups). Importing a module costs start-up time, so only the one whose
# command runs is imported; `broke --help` imports them all.
COMMANDS: dict[str, str] = {
    **dict.fromkeys(("list", "models", "swap", "fallback"), "slots"),
    **dict.fromkeys(("route", "explain", "validate", "doctor"), "routing"),
    **dict.fromkeys(("start", "stop", "restart", "status", "connect", "probe", "metrics"), "gateway"),
    "dashboard": "dashboard",
    **dict.fromkeys(("claude", "c", "codex", "x", "gemini", "g", "launch-env"), "launch"),
    **dict.fromkeys(("key-policy", "key-state", "model-policy", "model-state"), "policy"),
    "estimate": "router",
    "feedback": "router",
    "freeze": "snapshots",
    "benchmark-sequential": "bench",
    "export-baseline": "bench",
    "router": "router",
    "sandbox": "sandbox",
    "harness": "harness",
    "local": "local",
    "worker": "local",
    "node": "nodes",
    "team": "teams",
    "profile": "teams",
    "snapshot": "snapshots",
    "backend": "backends",
    "cost": "cost",
    "baseline": "bench",
}


def module_commands(module: str, like: typer.Typer) -> dict[str, Command]:
    """The click commands that `broke.cli.<module>` registers, built with `like`'s settings."""
    sub = typer.Typer(rich_markup_mode=like.rich_markup_mode, pretty_exceptions_short=like.pretty_exceptions_short,
                      suggest_commands=like.suggest_commands)
    importlib.import_module(f"broke.cli.{module}").register(sub)
    return dict(typer.main.get_group(sub).commands)


class LazyCommands(MutableMapping[str, Command]):
    """The root group's commands: every name of COMMANDS, each built when first looked up. Click types a
    group's commands as mutable; these are fixed by COMMANDS, so adding or removing one is refused."""

    def __init__(self, like: typer.Typer) -> None:
        self._like = like
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            self._built.update(module_commands(COMMANDS[name], self._like))
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def __setitem__(self, name: str, command: Command) -> None:
        raise TypeError("add commands in a module of broke.cli listed in COMMANDS, not on `app` itself")

    def __delitem__(self, name: str) -> None:
        raise TypeError("broke's commands are the ones COMMANDS lists")


def _error(message: str) -> None:
    from broke.cli.output import one_line

    sys.stderr.write(f"broke: error: {one_line(message)}\n")


class BrokeGroup(TyperGroup):
    """Runs the command non-standalone so every failure becomes one clear line: 1 error, 2 usage.
    Its commands are the lazily built COMMANDS."""

    def __init__(self, **attrs: Any) -> None:
        if attrs.get("commands"):
            raise TypeError("add commands in a module of broke.cli listed in COMMANDS, not on `app` itself")
        super().__init__(**attrs)
        self.commands = LazyCommands(app)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args=argv, prog_name=prog_name or "broke", complete_var=complete_var,
                              standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
            code = rv if isinstance(rv, int) else 0
        except NoArgsIsHelpError as exc:
            sys.stdout.write(exc.format_message() + "\n")
            code = 0
        except UsageError as exc:
            _error(f"{exc.format_message()} (see `{self._command_path(argv)} --help`)")
            code = exc.exit_code
        except typer.TyperException as exc:
            _error(exc.format_message())
            code = exc.exit_code
        except BrokeError as exc:
            _error(str(exc))
            code = exc.exit_code
        except typer.Abort:
            _error("aborted")
            code = 130
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _error(f"{where}{exc.strerror or exc}")
            code = 1
        except Exception as exc:  # a bug: still one line, never a traceback (BROKE_DEBUG=1 shows it)
            if os.environ.get("BROKE_DEBUG"):
                raise
            _error(f"internal error, please report it: {type(exc).__name__}: {exc}")
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code

    def _command_path(self, args: list[str]) -> str:
        """`broke profile new` for args that start with `profile new …`."""
        words, command = ["broke"], self
        for token in args:
            sub = getattr(command, "commands", {}).get(token)
            if sub is None:
                break
            words.append(token)
            command = sub
        return " ".join(words)


app = typer.Typer(
    cls=BrokeGroup,
    name="broke",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Local control plane for LLM routing: stable slots, your choice of backend.",
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"broke {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Local control plane for LLM routing: stable slots, your choice of backend.

    With no command: start the gateway if it is not running, then show its status.
    """
    if ctx.invoked_subcommand is None:
        from broke.cli import gateway

        gateway.bare()
