"""CLI and files: restart keeps the port, and bad names or paths get one clear line."""
from __future__ import annotations

import pytest

from broke.control.runfiles import read_record
from broke.procs import free_port
from conftest import add_fake_backends, assert_one_error_line
from fake_provider import FakeProvider


@pytest.mark.timeout(300)
def test_restart_without_port_keeps_the_recorded_port(broke_home, cli):
    fake = FakeProvider().start()
    try:
        add_fake_backends(broke_home, fake, "model-a")
        assert cli("swap", "sonnet=fake/model-a").exit_code == 0
        port = free_port()
        started = cli("start", "--port", str(port))
        assert started.exit_code == 0, started.output
        try:
            restarted = cli("restart")
            assert restarted.exit_code == 0, restarted.output
            assert f"127.0.0.1:{port}" in restarted.stdout
            record = read_record(broke_home)
            assert record is not None and record.front.port == port
        finally:
            cli("stop")
    finally:
        fake.stop()


@pytest.mark.parametrize("args, fragments, code", [
    (["local", "add", "/nonexistent-dir"], ["no directory '/nonexistent-dir'"], 1),
    (["local", "add", "./nope/x"], ["no directory"], 1),
    (["local", "add", "org/na me[/]"], ["neither a directory nor a hub repo id"], 2),
    (["team", "save", "mine\n"], ["team name 'mine\\n'"], 1),
    (["team", "save", "a\tb"], ["team name 'a\\tb'"], 1),
    (["profile", "new", "p\n"], ["profile name 'p\\n'"], 1),
    (["profile", "new", "[/]"], ["profile name '[/]'"], 1),
    (["backend", "add", "lab/x", "--provider", "openai-compatible", "--model", "x",
      "--api-base", "http://127.0.0.1:1/v1", "--key-env", "LAB_KEY\n"], ["--key-env"], 1),
    (["swap", "sonnet", "[/]\nx"], ["unknown backend '[/]\\nx'"], 1),
    (["key-state", "set", "[/]", "blocked"], ["'[/]' is not a key variable name"], 1),
    (["key-state", "set", "LAB_KEY", "cooldown", "--for", "nan"], ["--for takes a number of seconds"], 2),
    (["model-state", "set", "groq/llama-3.3-70b-versatile", "cooldown", "--for", "-5"], ["--for"], 2),
])
def test_bad_names_and_paths_get_one_clear_line(broke_home, cli, args, fragments, code):
    assert cli("swap", "sonnet", "groq/llama-3.3-70b-versatile").exit_code == 0
    before = sorted((p.relative_to(broke_home), p.read_bytes()) for p in broke_home.rglob("*") if p.is_file())
    assert_one_error_line(cli(*args), *fragments, code=code)
    after = sorted((p.relative_to(broke_home), p.read_bytes()) for p in broke_home.rglob("*") if p.is_file())
    assert after == before


def test_markup_in_names_is_shown_as_typed(broke_home, cli):
    args = ["backend", "add", "lab/[/]x[bold]", "--provider", "openai-compatible", "--model", "[red]m[/]",
            "--api-base", "http://127.0.0.1:1/v1"]
    added = cli(*args)
    if added.exit_code == 0:
        assert "lab/[/]x[bold]" in added.stdout
        for listing in (["models"], ["list"]):
            result = cli(*listing)
            assert result.exit_code == 0 and "Traceback" not in result.output
    else:
        assert_one_error_line(added)
    saved = cli("snapshot", "save", "--note", "[/] and [bold]")
    assert saved.exit_code == 0
    shown = cli("snapshot", "list")
    assert shown.exit_code == 0 and "[/] and [bold]" in shown.stdout
