"""Bad input: one clear line, exit 1 (2 for usage), no traceback, and the state file untouched."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_one_error_line


@pytest.fixture
def state_file(broke_home, cli) -> Path:
    """A real state file written by broke (generation 1)."""
    assert cli("swap", "sonnet", "groq/llama-3.3-70b-versatile").exit_code == 0
    return broke_home / "state.toml"


def _unchanged_after(path: Path, cli, args, *fragments, code=1):
    before = path.read_bytes()
    result = cli(*args)
    assert_one_error_line(result, *fragments, code=code)
    assert path.read_bytes() == before
    return result


@pytest.mark.parametrize("args, fragments", [
    (["route", "nonesuch"], ["unknown slot 'nonesuch'", "sonnet"]),
    (["explain", "nonesuch"], ["unknown slot 'nonesuch'"]),
    (["swap", "nonesuch", "groq/llama-3.3-70b-versatile"], ["unknown slot 'nonesuch'"]),
    (["swap", "sonnet", "groq/nonesuch"], ["unknown backend 'groq/nonesuch'", "broke models"]),
    (["swap", "sonnet=groq/llama-3.3-70b-versatile", "opus=nope/x"], ["unknown backend 'nope/x'"]),
    (["swap", "nonesuch-team"], ["unknown team 'nonesuch-team'"]),
    (["team", "load", "nonesuch"], ["unknown team 'nonesuch'"]),
    (["profile", "load", "nonesuch"], ["unknown profile 'nonesuch'"]),
    (["fallback", "sonnet", "nope/x"], ["unknown backend 'nope/x'"]),
    (["fallback", "sonnet", "sonnet"], ["cannot fall back to itself"]),
    (["snapshot", "restore", "99"], ["no snapshot '99'"]),
])
def test_unknown_names_are_refused(state_file, cli, args, fragments):
    _unchanged_after(state_file, cli, args, *fragments)


@pytest.mark.parametrize("args, fragment", [
    (["profile", "new", "p", "--rpm"], "'--rpm' requires an argument"),
    (["route"], "Missing argument"),
    (["swap", "sonnet", "a", "b"], "swap TEAM"),
    (["freeze", "maybe"], "'on' or 'off'"),
    (["list", "--bogus"], "No such option"),
    (["nonesuch-command"], "No such command"),
])
def test_usage_errors_exit_2(state_file, cli, args, fragment):
    _unchanged_after(state_file, cli, args, fragment, code=2)


def test_fallback_cycle_is_refused(state_file, cli):
    assert cli("fallback", "sonnet", "opus").exit_code == 0
    _unchanged_after(state_file, cli, ["fallback", "opus", "haiku", "sonnet"], "fallback cycle: opus -> sonnet -> opus")


BAD_FILES = {
    "syntax": ('schema_version = 1\ngeneration = 3\n[slots.sonnet\nbackend = "x"\n', ["invalid TOML", "line 3"]),
    "wrong type": ('schema_version = 1\ngeneration = 3\n\n[slots.sonnet]\nbackend = 42\n',
                   ["state.toml:5:", "slots.sonnet.backend must be a string, got an integer"]),
    "wrong type in list": ('generation = 3\n[slots.opus]\nbackend = "groq/llama-3.3-70b-versatile"\n'
                           'fallbacks = "haiku"\n', ["state.toml:4:", "slots.opus.fallbacks must be an array"]),
    "unknown key": ('generation = 3\n[slots.opus]\nbackend = "groq/llama-3.3-70b-versatile"\nbakend = "x"\n',
                    ["state.toml:4:", "unknown key 'slots.opus.bakend'"]),
    "bad mode": ('generation = 3\n\n[key_policy.openrouter]\nmode = "random"\n',
                 ["state.toml:4:", "key_policy.openrouter.mode must be one of"]),
    "negative": ('generation = -2\n', ["state.toml:1:", "generation must be >= 0"]),
    "newer schema": ('schema_version = 99\ngeneration = 3\n', ["newer broke", "schema_version 99"]),
    "not utf-8": (b"generation = 3\n\xff\xfe\n", ["not a UTF-8 text file"]),
}
READ_AND_WRITE = [["list"], ["route", "sonnet"], ["explain", "opus"], ["doctor"], ["validate"], ["models"],
                  ["swap", "sonnet", "cerebras/gpt-oss-120b"], ["fallback", "sonnet", "haiku"],
                  ["team", "load", "free-cloud"], ["freeze", "on"], ["snapshot", "save"],
                  ["team", "save", "x"]]


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_malformed_state_is_reported_never_replaced(broke_home, cli, kind):
    content, fragments = BAD_FILES[kind]
    broke_home.mkdir(parents=True)
    path = broke_home / "state.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = path.read_bytes()
    for args in READ_AND_WRITE:
        result = cli(*args)
        assert_one_error_line(result, str(path), *fragments)
        assert path.read_bytes() == before, args


def test_write_while_frozen_is_refused_and_changes_nothing(state_file, cli):
    assert cli("freeze", "on").exit_code == 0
    assert cli("team", "save", "keep").exit_code == 0  # writes a team file, not the state
    blocked = [
        ["swap", "sonnet", "cerebras/gpt-oss-120b"], ["swap", "sonnet=cerebras/gpt-oss-120b"],
        ["swap", "keep"], ["fallback", "sonnet", "haiku"], ["fallback", "sonnet", "--clear"],
        ["team", "load", "free-cloud"], ["profile", "load", "solo"], ["snapshot", "restore", "1"],
        ["backend", "add", "lab/x", "--provider", "openai-compatible", "--model", "x",
         "--api-base", "http://127.0.0.1:1/v1"],
    ]
    assert cli("snapshot", "save").exit_code == 0
    for args in blocked:
        _unchanged_after(state_file, cli, args, "state is frozen", "broke freeze off")
    assert cli("freeze", "off").exit_code == 0
    assert cli("swap", "sonnet", "cerebras/gpt-oss-120b").exit_code == 0


def test_pinned_slot_refuses_a_floating_alias(broke_home, cli):
    broke_home.mkdir(parents=True)
    (broke_home / "state.toml").write_text(
        '[slots.sonnet]\nbackend = "anthropic/claude-sonnet-4-5-20250929"\npinned = true\n')
    path = broke_home / "state.toml"
    _unchanged_after(path, cli, ["swap", "sonnet", "anthropic/claude-sonnet-4-5"], "pinned", "floating")
    assert cli("swap", "sonnet", "anthropic/claude-opus-4-1-20250805").exit_code == 0

