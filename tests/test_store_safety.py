"""The state store under pressure: concurrent writers lose nothing, a killed writer corrupts nothing."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from broke.state.store import StateStore

SWAP_BACKENDS = ["groq/llama-3.3-70b-versatile", "cerebras/gpt-oss-120b", "gemini/gemini-2.5-pro",
                 "anthropic/claude-opus-4-1-20250805"]
FALLBACKS = ["gemini/gemini-2.5-flash", "groq/openai/gpt-oss-120b", "cerebras/qwen-3-coder-480b"]

WRITER = textwrap.dedent("""
    import sys
    from typer.testing import CliRunner
    from broke.cli.main import app

    slot, count = sys.argv[1], int(sys.argv[2])
    swaps, fallbacks = sys.argv[3].split(","), sys.argv[4].split(",")
    runner = CliRunner()
    for j in range(count):
        if j % 2 == 0:
            args = ["swap", slot, swaps[j % len(swaps)]]
        else:
            args = ["fallback", slot, fallbacks[j % len(fallbacks)]]
        result = runner.invoke(app, args)
        if result.exit_code != 0:
            sys.exit(f"{args}: {result.output}")
""")


def expected_final(count: int) -> tuple[str, list[str]]:
    last_swap = max(j for j in range(count) if j % 2 == 0)
    last_fallback = max(j for j in range(count) if j % 2 == 1)
    return SWAP_BACKENDS[last_swap % len(SWAP_BACKENDS)], [FALLBACKS[last_fallback % len(FALLBACKS)]]


def test_no_lost_update_with_8_processes_times_25_commands(broke_home, slots):
    processes, count = 8, 25
    chosen = list(slots)[:processes]
    env = {**os.environ, "BROKE_HOME": str(broke_home)}
    children = [
        subprocess.Popen([sys.executable, "-c", WRITER, slot, str(count), ",".join(SWAP_BACKENDS),
                          ",".join(FALLBACKS)], env=env, stderr=subprocess.PIPE, text=True)
        for slot in chosen
    ]
    for child in children:
        _, err = child.communicate(timeout=240)
        assert child.returncode == 0, err

    state = StateStore(broke_home).load()
    assert state.generation == processes * count
    backend, fallbacks = expected_final(count)
    for slot in chosen:
        assert state.slots[slot].backend == backend, slot
        assert state.slots[slot].fallbacks == fallbacks, slot


KILLED_WRITER = textwrap.dedent("""
    import sys
    from broke.state.model import CustomBackend
    from broke.state.store import StateStore

    store = StateStore()
    def grow(state):
        n = state.generation
        for i in range(4000):
            state.backends[f"lab/m{i}"] = CustomBackend("openai-compatible", f"model-{n}-{i}",
                                                        "http://127.0.0.1:9/v1")
    while True:
        store.update(grow)
        print("wrote", flush=True)
""")


def _write_activity(home: Path) -> tuple[frozenset[str], int, int]:
    """What changes when a write starts: the directory's entries, or the state file's mtime/size."""
    path = home / "state.toml"
    info = path.stat()
    return frozenset(os.listdir(home)), info.st_mtime_ns, info.st_size


def test_writer_killed_mid_write_leaves_previous_state_intact(broke_home):
    """Kill the writer the moment it starts writing (temp file appears or state file changes)."""
    env = {**os.environ, "BROKE_HOME": str(broke_home)}
    rng = random.Random(7)
    store = StateStore(broke_home)
    last_generation = 0
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "wrote"
        before = _write_activity(broke_home)
        deadline = time.monotonic() + 30
        while _write_activity(broke_home) == before and time.monotonic() < deadline:
            pass
        delay = rng.uniform(0.0, 0.002)
        if delay:
            time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()

        state = store.load()  # parses and validates, or raises
        assert state.generation >= last_generation
        n = state.generation - 1  # the models were written by the change that made this generation
        assert len(state.backends) == 4000
        assert state.backends["lab/m3999"].model == f"model-{n}-3999"
        last_generation = state.generation

    # The lock died with the writer: the next command goes through at once.
    started = time.monotonic()
    StateStore(broke_home).update(lambda s: None)
    assert time.monotonic() - started < 5


def test_failed_change_writes_nothing(broke_home, cli):
    assert cli("swap", "sonnet", "groq/llama-3.3-70b-versatile").exit_code == 0
    path = Path(broke_home) / "state.toml"
    before = path.read_bytes()

    def broken(state):
        state.slots["sonnet"].backend = "cerebras/gpt-oss-120b"
        raise RuntimeError("change failed half-way")

    with pytest.raises(RuntimeError, match="change failed half-way"):
        StateStore(broke_home).update(broken)
    assert path.read_bytes() == before
