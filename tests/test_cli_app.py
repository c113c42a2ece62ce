"""The root app loads command modules lazily: help still lists every command, a command loads only its module."""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import textwrap

import pytest
import typer
import typer.main
from typer._click import Command

import broke.cli
from broke.cli.main import COMMANDS


def registered() -> dict[str, tuple[str, Command]]:
    """Every top-level command that some module of broke.cli registers: name -> (module, click command)."""
    found = {}
    for info in pkgutil.iter_modules(broke.cli.__path__):
        module = importlib.import_module(f"broke.cli.{info.name}")
        if hasattr(module, "register"):
            sub = typer.Typer()
            module.register(sub)
            for name, command in typer.main.get_group(sub).commands.items():
                assert name not in found, f"{name} is registered by two modules"
                found[name] = (info.name, command)
    return found


def command_rows(help_text: str) -> dict[str, str]:
    """The rows of the Commands panel of a rich help text: name -> the help shown beside it."""
    rows, inside = {}, False
    for line in help_text.splitlines():
        if "─ Commands " in line:
            inside = True
        elif inside and line.startswith("╰"):
            break
        elif inside and line.startswith("│  ") and rows:  # a help text wrapped onto another line
            last = list(rows)[-1]
            rows[last] = " ".join([rows[last], *line.strip("│ ").split()])
        elif inside:
            name, _, text = line.strip("│ ").partition(" ")
            rows[name] = " ".join(text.split())
    return rows


def test_the_lazy_table_names_every_registered_command_and_its_module():
    assert {name: module for name, (module, _) in registered().items()} == COMMANDS


def test_help_lists_every_command_with_its_short_help(cli):
    result = cli("--help")
    assert result.exit_code == 0, result.output
    rows = command_rows(result.stdout)
    assert list(rows) == list(COMMANDS)
    for name, (_, command) in registered().items():
        assert rows[name] == command.get_short_help_str(limit=200), name


@pytest.mark.parametrize("group", [name for name, (_, command) in registered().items()
                                   if isinstance(command, typer.core.TyperGroup)])
def test_group_help_lists_its_subcommands(cli, group):
    result = cli(group, "--help")
    assert result.exit_code == 0, result.output
    assert set(command_rows(result.stdout)) == set(registered()[group][1].commands)


def test_an_unknown_command_is_a_usage_error_with_a_suggestion(cli):
    result = cli("rout", "sonnet")
    assert result.exit_code == 2
    assert result.stderr == ("broke: error: No such command 'rout'. Did you mean 'route', 'router'? "
                             "(see `broke --help`)\n")


HEAVY = ["litellm", "mlx", "mlx_lm", "sklearn"]
UNUSED = ["attr", "click", "pygments"]  # optional imports of rich.pretty and of httpx's command line
READ_COMMANDS = [["route", "sonnet"], ["list"], ["explain", "sonnet"], ["models"], ["status"],
                 ["key-policy"], ["key-state"], ["model-policy"], ["validate"], ["doctor"], ["profile", "list"],
                 ["worker", "list"], ["cost"], ["backend", "price", "anthropic/claude-sonnet-4-5-20250929"]]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_a_read_command_loads_only_its_own_command_module(broke_home, args):
    probe = textwrap.dedent("""
        import json, sys
        from broke.cli.script import main
        sys.argv = ["broke", *json.loads(sys.argv[1])]
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        sys.stdout.write("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
    """)
    env = {"BROKE_HOME": str(broke_home), "ANTHROPIC_API_KEY": "placeholder", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(args)], env=env, capture_output=True,
                         text=True, timeout=120)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["code"] in (0, 1), out.stderr  # validate and doctor exit 1 on findings
    loaded = set(report["modules"])
    for name in HEAVY + UNUSED:
        assert name not in loaded, f"`broke {' '.join(args)}` imported {name}"
    command_modules = {m for m in loaded if m.startswith("broke.cli.")} - {
        "broke.cli.script", "broke.cli.main", "broke.cli.output"}
    assert command_modules == {f"broke.cli.{COMMANDS[args[0]]}"}


def test_a_bug_in_the_core_is_one_line_and_changes_nothing(broke_home, cli, monkeypatch):
    """An exception no handler expects (here a core function that breaks) is reported on one line asking
    for a report, exit 1; BROKE_DEBUG=1 lets the traceback through."""
    from broke import changes

    def broken_swap(*_args: object, **_kwargs: object) -> None:
        raise KeyError("slots")

    monkeypatch.setattr(changes, "swap", broken_swap)
    result = cli("swap", "sonnet", "anthropic/claude-opus-4-1-20250805")
    assert result.exit_code == 1
    assert result.stderr.strip() == "broke: error: internal error, please report it: KeyError: 'slots'"
    assert "Traceback" not in result.output and not (broke_home / "state.toml").exists()
    monkeypatch.setenv("BROKE_DEBUG", "1")
    debugged = cli("swap", "sonnet", "anthropic/claude-opus-4-1-20250805")
    assert isinstance(debugged.exception, KeyError)
