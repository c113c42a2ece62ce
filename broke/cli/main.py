"""The `broke` app: registers the command groups and maps every error to one line and an exit code."""
from __future__ import annotations

import sys
from typing import Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from broke import __version__
from broke.cli import (backends, bench, dashboard, gateway, launch, local, nodes, policy, router, routing, slots,
                       snapshots, teams)
from broke.errors import BrokeError


def _error(message: str) -> None:
    sys.stderr.write(f"broke: error: {message}\n")


class BrokeGroup(TyperGroup):
    """Runs the command non-standalone so every failure becomes one clear line: 1 error, 2 usage."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args=args, prog_name=prog_name or "broke", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except NoArgsIsHelpError as exc:
            sys.stdout.write(exc.format_message() + "\n")
            code = 0
        except UsageError as exc:
            _error(f"{exc.format_message()} (see `{self._command_path(args)} --help`)")
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
        gateway.bare()


for module in (slots, routing, gateway, dashboard, launch, policy, router, local, nodes, teams, snapshots, backends,
               bench):
    module.register(app)


def main() -> None:
    app()
