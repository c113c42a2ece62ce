"""Shared fixtures: an isolated BROKE_HOME, a clean provider environment, and a CLI runner."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broke.catalog import load_catalog
from broke.cli.main import app
from broke.procs import free_port

_KEY_VARS = re.compile(r"^[A-Z0-9_]*(API_KEY|TOKEN)(_\d+)?$")


@pytest.fixture(autouse=True)
def broke_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own home and an environment without provider keys."""
    home = tmp_path / "home"
    monkeypatch.setenv("BROKE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    for name in list(os.environ):
        if _KEY_VARS.match(name):
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def cli():
    """Run `broke ARGS…` in-process; returns the click Result (exit_code, stdout, stderr, output)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return run


@pytest.fixture
def cli_json(cli):
    """Run a read command with --json and return (exit code, parsed JSON)."""

    def run(*args: str):
        result = cli(*args, "--json")
        return result.exit_code, json.loads(result.stdout)

    return run


@pytest.fixture(scope="session")
def client_bin() -> Path:
    """The bin directory of the pinned Claude Code and Codex (installed from npm once, cached by version)."""
    from clients import install_clients

    return install_clients()


@pytest.fixture(scope="session")
def gemini_bin() -> Path:
    """The bin directory of the pinned Gemini CLI (installed from npm once, cached by version)."""
    from clients import install_gemini

    return install_gemini()


@pytest.fixture
def slots() -> tuple[str, ...]:
    return load_catalog().slots


def run_cli(*args: str):
    """Run `broke ARGS…` in-process outside a test's fixtures (module fixtures); it must succeed."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def add_fake_backends(home: Path, fake, *models: str, keys: tuple[str, ...] = ("key-one",)) -> None:
    """The fake provider as OpenAI-compatible backends `fake/MODEL` of the key pool FAKE_API_KEY, whose
    keys (`keys`: FAKE_API_KEY, FAKE_API_KEY_2, …) go into the home's .env."""
    home.mkdir(parents=True, exist_ok=True)
    names = ["FAKE_API_KEY", *(f"FAKE_API_KEY_{n}" for n in range(2, len(keys) + 1))]
    (home / ".env").write_text("".join(f"{name}={key}\n" for name, key in zip(names, keys, strict=True)))
    for model in models:
        run_cli("backend", "add", f"fake/{model}", "--provider", "openai-compatible", "--api-base", fake.base_url,
                "--model", model, "--key-env", "FAKE_API_KEY")


def assert_one_error_line(result, *fragments: str, code: int = 1) -> None:
    """A failed command: the expected exit code, exactly one error line naming the problem, no traceback."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("broke: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


@contextmanager
def module_home(home: Path) -> Iterator[pytest.MonkeyPatch]:
    """For a module-scoped fixture: BROKE_HOME set to `home` and the machine's provider keys out of the
    environment (what `broke_home` does per test), undone at the end."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        for name in [n for n in os.environ if n.endswith("_API_KEY") or "_API_KEY_" in n]:
            mp.delenv(name)
        yield mp


@contextmanager
def serving(*start_args: str) -> Iterator[tuple[int, str]]:
    """`broke start --port PORT START_ARGS…` on a free port: (port, client token); `broke stop` at the end."""
    port = free_port()
    run_cli("start", "--port", str(port), *start_args)
    try:
        yield port, json.loads(run_cli("connect", "--json").stdout)["token"]
    finally:
        run_cli("stop")
