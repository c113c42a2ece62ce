"""A state file cut short is refused (a hand-edited one is not), a damaged state is recovered by
`snapshot restore` without reading it, and temporary files of killed writers are cleaned."""
from __future__ import annotations

import os
import time

import pytest

from broke.fileio import atomic_write
from broke.state.store import LAST_LINE, StateStore
from conftest import assert_one_error_line


@pytest.fixture
def rich_state(broke_home, cli):
    """A state file written by broke with custom backends, a fallback, a policy and a snapshot (id 1)."""
    for args in (["backend", "add", "lab/one", "--provider", "openai-compatible", "--model", "one",
                  "--api-base", "http://127.0.0.1:1234/v1"],
                 ["backend", "add", "lab/two", "--provider", "openai-compatible", "--model", "two",
                  "--api-base", "http://127.0.0.1:1235/v1"],
                 ["swap", "sonnet", "lab/one"], ["fallback", "sonnet", "lab/two"],
                 ["snapshot", "save", "--note", "good"]):
        assert cli(*args).exit_code == 0, (args, cli(*args).output)
    return broke_home / "state.toml"


def test_an_emptied_state_file_is_refused_and_not_replaced(rich_state, cli):
    rich_state.write_bytes(b"")
    for args in (["freeze", "on"], ["list"], ["swap", "sonnet", "lab/two"]):
        assert_one_error_line(cli(*args), str(rich_state), "empty", "broke snapshot restore")
        assert rich_state.read_bytes() == b""


def test_a_truncated_state_file_is_refused_with_what_to_do(rich_state, cli):
    text = rich_state.read_text()
    cut = text[: text.index("[backends.")]  # parses, but without the custom backends
    rich_state.write_text(cut)
    for args in (["list"], ["freeze", "on"]):
        assert_one_error_line(cli(*args), str(rich_state), "cut short", "broke snapshot list",
                              "broke snapshot restore")
        assert rich_state.read_text() == cut
    rich_state.write_text(text.splitlines()[0] + "\n")  # only broke's first line: cut, not merely empty
    assert_one_error_line(cli("list"), "cut short")


def test_a_hand_edited_state_file_stays_readable(rich_state, cli, cli_json):
    text = rich_state.read_text().replace('model = "two"', 'model = "two-b"  # edited')
    rich_state.write_text(text + '\n[model_policy.opus]\nmode = "round_robin"\n')  # even after the last line
    assert cli("list").exit_code == 0
    assert cli("freeze", "on").exit_code == 0
    state = StateStore(rich_state.parent).load()
    assert state.backends["lab/two"].model == "two-b" and state.model_policy["opus"].mode == "round_robin"
    # A file written from scratch (no first line of broke's) is taken as it is.
    rich_state.write_text('[slots.sonnet]\nbackend = "cerebras/gpt-oss-120b"\n')
    assert cli("list").exit_code == 0
    assert StateStore(rich_state.parent).load().slots["sonnet"].backend == "cerebras/gpt-oss-120b"


def test_a_state_file_linked_to_nothing_is_refused_and_restore_moves_the_link_aside(rich_state, cli):
    target = rich_state.parent / "dotfiles" / "state.toml"  # e.g. kept in a dotfiles checkout that moved
    rich_state.unlink()
    rich_state.symlink_to(target)
    for args in (["list"], ["freeze", "on"]):
        assert_one_error_line(cli(*args), str(rich_state), "symlink", str(target), "broke snapshot restore")
        assert rich_state.is_symlink() and not target.exists()
    assert cli("snapshot", "restore", "1").exit_code == 0
    assert not rich_state.is_symlink() and set(StateStore(rich_state.parent).load().backends) == {"lab/one", "lab/two"}
    assert [p.name for p in rich_state.parent.iterdir() if p.name.startswith("state.toml.damaged-") and p.is_symlink()]


def test_a_cut_file_the_user_confirms_is_accepted(rich_state, cli):
    text = rich_state.read_text()
    rich_state.write_text(text[: text.index("[backends.")] + LAST_LINE + "\n")
    assert cli("list").exit_code == 0


@pytest.mark.parametrize("damage", ["corrupt", "binary", "newer", "truncated", "empty"])
def test_snapshot_restore_recovers_a_damaged_state_and_keeps_it_aside(rich_state, cli, cli_json, damage):
    text = rich_state.read_text()
    bad = {"corrupt": b"[slots.sonnet\nbackend = 3\n", "binary": b"\x00\xff\xfe\x01garbage",
           "newer": text.replace("schema_version = 1", "schema_version = 99").encode(),
           "truncated": text[: text.index("[backends.")].encode(), "empty": b""}[damage]
    rich_state.write_bytes(bad)
    assert_one_error_line(cli("list"), "broke snapshot restore")
    assert cli("snapshot", "list").exit_code == 0
    result = cli("snapshot", "restore", "1")
    assert result.exit_code == 0, result.output
    assert "damaged state file was kept" in result.stdout
    asides = [p for p in rich_state.parent.iterdir() if p.name.startswith("state.toml.damaged-")]
    assert len(asides) == 1 and asides[0].read_bytes() == bad
    state = StateStore(rich_state.parent).load()
    assert set(state.backends) == {"lab/one", "lab/two"} and state.slots["sonnet"].fallbacks == ["lab/two"]
    assert state.generation == 5  # past every generation a snapshot recorded (4)
    assert cli("swap", "opus", "lab/two").exit_code == 0


def test_a_frozen_readable_state_still_refuses_restore(rich_state, cli):
    assert cli("freeze", "on").exit_code == 0
    before = rich_state.read_bytes()
    assert_one_error_line(cli("snapshot", "restore", "1"), "state is frozen")
    assert rich_state.read_bytes() == before


def test_orphan_temp_files_of_killed_writers_are_removed_on_the_next_write(broke_home, cli):
    assert cli("swap", "sonnet", "groq/llama-3.3-70b-versatile").exit_code == 0
    old = [broke_home / f".state.toml.abcd{n:04d}.tmp" for n in range(3)]
    fresh = broke_home / ".state.toml.live0000.tmp"   # a live writer's, too young to touch
    foreign = broke_home / ".state.toml.mine.tmp"     # not a name broke gives
    other = broke_home / "notes.tmp"
    for path in (*old, fresh, foreign, other):
        path.write_bytes(b"partial")
    stale = time.time() - 60
    for path in (*old, foreign, other):
        os.utime(path, (stale, stale))
    assert cli("swap", "sonnet", "cerebras/gpt-oss-120b").exit_code == 0
    assert not any(p.exists() for p in old)
    assert fresh.exists() and foreign.exists() and other.exists()


def test_atomic_write_cleans_only_its_own_files_temps(tmp_path):
    target, neighbour = tmp_path / "a.json", tmp_path / ".b.json.abcdefgh.tmp"
    neighbour.write_bytes(b"x")
    os.utime(neighbour, (0, 0))
    atomic_write(target, b"{}")
    assert neighbour.exists() and target.read_bytes() == b"{}"


def test_a_cut_snapshot_is_refused_and_does_not_hide_the_others(rich_state, cli, cli_json):
    assert cli("snapshot", "save", "--note", "second").exit_code == 0
    first = rich_state.parent / "snapshots" / "000001.toml"
    text = first.read_text()
    first.write_text(text[: text.index("[state.backends.")])  # parses, but without the backends
    listed = cli("snapshot", "list")
    assert listed.exit_code == 0 and "second" in listed.stdout
    assert "000001.toml: the snapshot is cut short" in listed.stderr and len(listed.stderr.splitlines()) == 1
    before = rich_state.read_bytes()
    assert_one_error_line(cli("snapshot", "restore", "1"), "000001.toml", "cut short")
    assert rich_state.read_bytes() == before
    assert cli("snapshot", "restore", "2").exit_code == 0


def _kill_a_writer_mid_write(home) -> list[str]:
    """Start a writer of big states, SIGKILL it while its temporary file exists; the temp files left."""
    import signal
    import subprocess
    import sys

    from test_store_safety import KILLED_WRITER

    def temps() -> list[str]:
        return [n for n in os.listdir(home) if n.startswith(".state.toml.") and n.endswith(".tmp")]

    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER], env={**os.environ, "BROKE_HOME": str(home)},
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "wrote"
        deadline = time.monotonic() + 30
        while not temps() and time.monotonic() < deadline:
            pass
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout:
            child.stdout.close()
    return temps()


def test_a_writer_killed_mid_write_leaves_a_temp_file_that_the_next_write_removes(broke_home, cli):
    left: list[str] = []
    for _ in range(5):  # the kill can land just after the rename; then there is nothing to clean: again
        left = _kill_a_writer_mid_write(broke_home)
        if left:
            break
    assert left, "every kill landed after the rename"
    StateStore(broke_home).load()  # the previous state, whole
    stale = time.time() - 60
    for name in left:
        os.utime(broke_home / name, (stale, stale))
    assert cli("swap", "sonnet", "cerebras/gpt-oss-120b").exit_code == 0
    assert not [n for n in os.listdir(broke_home) if n.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["team", "profile"])
def test_a_cut_team_or_profile_file_is_refused_and_a_hand_edited_one_read(broke_home, cli, kind):
    made = cli("team", "save", "mine") if kind == "team" else cli("profile", "new", "mine", "--slots", "haiku")
    assert made.exit_code == 0, made.output
    path = broke_home / f"{kind}s" / "mine.toml"
    text = path.read_text()
    assert text.splitlines()[0].startswith(f"# broke {kind}:") and text.splitlines()[-1] == f"# end of broke {kind}"
    show = ["team", "show", "mine"] if kind == "team" else ["profile", "show", "mine"]
    path.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")  # cut at a line: still valid TOML
    assert_one_error_line(cli(*show), str(path), "cut short", f"# end of broke {kind}")
    path.write_text("")
    assert_one_error_line(cli(*show), str(path), "empty")
    path.write_text("\n".join(text.splitlines()[1:-1]) + "\n")  # hand-written: no first or last line
    assert cli(*show).exit_code == 0
