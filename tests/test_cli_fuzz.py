"""Fuzz the CLI: every command's arguments and options (read from the Typer app itself) with random strings,
markup, control characters, paths and numbers. Whatever comes in: no traceback, exit 0, 1 or 2, one error
line on a refusal, and a refused call leaves the home byte for byte as it was."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import click
import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from broke.catalog import load_catalog
from broke.cli.main import app

pytestmark = pytest.mark.timeout(300)

#: Commands left out, and why: they start processes or clients, wait on a stream, train or benchmark
#: models (minutes), or open a browser. Everything else is fuzzed.
SKIPPED = {
    "start": "starts the gateway", "restart": "starts the gateway", "dashboard": "opens a browser",
    "claude": "runs a client", "c": "runs a client", "codex": "runs a client", "x": "runs a client",
    "probe": "sends a request upstream", "benchmark-sequential": "benchmarks models",
    "estimate": "loads the router model", "router calibrate": "loads the router model",
    "router eval": "evaluates the router model", "router train": "trains the router model",
    "local make-tiny": "writes model weights", "worker start": "starts a model server",
    "worker logs": "follows a log",
    "harness run": "runs a client", "harness evaluate": "starts the gateway to ask the review lanes",
}


def leaf_commands() -> dict[str, click.Command]:
    """Every runnable command of the app, by its words ('team save'), except SKIPPED."""
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, words: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found[" ".join(words)] = command
            return
        for name in list(subs):
            walk(subs[name], [*words, name])

    walk(typer.main.get_command(app), [])
    return {words: command for words, command in sorted(found.items()) if words not in SKIPPED}


COMMANDS = leaf_commands()
CATALOG = load_catalog()
KNOWN = [*CATALOG.slots, *sorted(CATALOG.backends)[:6], "on", "off", "free-cloud", "solo", "mine", "lab/one",
         "1", "2", "openai-compatible", "anthropic", "http://127.0.0.1:1/v1", "LAB_KEY", "OPENROUTER_API_KEY",
         "healthy", "blocked", "cooldown", "set", "clear", "round_robin", "ordered", "basic", "premium"]
MARKUP = ["[/]", "[bold]", "[red]x[/]", "[link=http://x]y", "[/bold]", "\\[", "]", "[", "[[/]]"]
PATHS = ["/nonexistent-dir", "/", "/tmp", "~", "../x", "./rel/y", "/dev/null", "a/b/c"]
NUMBERS = ["0", "-1", "3", "65536", "99999999999999999999", "1.5", "nan", "inf", "-0", "1e9"]
# argv cannot hold a NUL byte (execve refuses it), so generated text leaves it out; every other
# control character, newline and tab included, can reach broke.
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
VALUE = st.one_of(st.sampled_from(KNOWN), st.sampled_from(MARKUP), st.sampled_from(PATHS),
                  st.sampled_from(NUMBERS), TEXT,
                  st.tuples(st.sampled_from(KNOWN), st.sampled_from(["\n", "\t", "\r", "\x1b[31m", "[/]", " "]))
                  .map("".join),
                  st.integers(-10**6, 10**6).map(str))


def choices(param: click.Parameter) -> list[str]:
    """The words a parameter's metavar offers ('[healthy|cooldown|blocked]' -> those three), so that deeper
    code is reached, not only the first check."""
    metavar = getattr(param, "metavar", None) or ""
    return re.findall(r"(?<![A-Za-z])[a-z][a-z0-9_-]+", metavar)


def value_for(param: click.Parameter) -> st.SearchStrategy[str]:
    words = choices(param)
    return st.one_of(st.sampled_from(words), VALUE) if words else VALUE


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A command's words, then a random pick of its parameters with random values, sometimes a stray token."""
    words = draw(st.sampled_from(sorted(COMMANDS)))
    command = COMMANDS[words]
    args = words.split()
    for param in command.params:
        if isinstance(param, click.Argument):
            if param.nargs == -1:
                args += draw(st.lists(value_for(param), max_size=3))
            elif draw(st.integers(0, 9)):  # now and then left out: a usage error
                args.append(draw(value_for(param)))
        elif isinstance(param, click.Option) and draw(st.booleans()):
            args.append(draw(st.sampled_from(param.opts)))
            if not param.is_flag:
                args.append(draw(value_for(param)))
    if not draw(st.integers(0, 9)):
        args.insert(draw(st.integers(len(words.split()), len(args))), draw(VALUE))
    return args


def snapshot_home(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.fixture
def pristine(broke_home, cli, tmp_path, monkeypatch) -> Path:
    """A home with custom backends, a fallback, a policy, a team, a profile and a snapshot, kept aside."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # `local add ORG/NAME` must not go to the network
    for args in (["backend", "add", "lab/one", "--provider", "openai-compatible", "--model", "one",
                  "--api-base", "http://127.0.0.1:1/v1", "--key-env", "LAB_KEY"],
                 ["swap", "sonnet", "lab/one"], ["fallback", "sonnet", "haiku"],
                 ["model-policy", "sonnet", "--mode", "round_robin"], ["team", "save", "mine"],
                 ["profile", "new", "solo2", "--rpm", "5"], ["snapshot", "save", "--note", "one"]):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    copy = tmp_path / "pristine"
    shutil.copytree(broke_home, copy)
    return copy


RUNS: dict[str, float] = {"examples": 0, "seconds": 0.0, "refused": 0}
ACCEPTED: set[str] = set()


def test_fuzzed_command_lines_fail_cleanly(pristine, broke_home):
    runner = CliRunner()
    started = time.monotonic()

    @settings(max_examples=1500, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(command_lines())
    def check(args: list[str]) -> None:
        shutil.rmtree(broke_home, ignore_errors=True)
        shutil.copytree(pristine, broke_home)
        before = snapshot_home(broke_home)
        result = runner.invoke(app, args)
        RUNS["examples"] += 1
        shown = f"{args!r}\n{result.output}"
        assert "Traceback" not in result.output, shown
        assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
        assert result.exit_code in (0, 1, 2), shown
        assert "internal error" not in result.stderr, shown
        if not result.exit_code:
            ACCEPTED.add(" ".join(args[:2]))
        if result.exit_code:
            RUNS["refused"] += 1
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            # At most one line: report commands (doctor, validate, route) exit 1 with their report on stdout.
            assert len(lines) <= 1 and all(line.startswith("broke: error: ") for line in lines), shown
            assert snapshot_home(broke_home) == before, shown

    check()
    RUNS["seconds"] = time.monotonic() - started
    print(f"\nfuzz: {RUNS['examples']} command lines over {len(COMMANDS)} commands in {RUNS['seconds']:.1f} s, "
          f"{RUNS['refused']} refused; accepted at least once: {len(ACCEPTED)} first-two-word prefixes")
    print("accepted:", ", ".join(sorted(ACCEPTED)))
