"""Shared helpers for the gateway benchmarks (gateway_overhead.py, worker_overhead.py).

The scripts run as `.venv/bin/python perf/<script>.py`, so this folder is on sys.path and they
import these with `from harness import ...`.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

#: The `broke` CLI installed next to the running interpreter (the venv's).
BROKE_EXE = Path(sys.executable).parent / "broke"
#: The checkout (the fake provider is tests/fake_provider.py).
ROOT = Path(__file__).resolve().parent.parent


class RequestFailed(Exception):
    """A request got an answer that is not the one the benchmark expects."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


class CpuMeter:
    """CPU seconds (user + system) used so far by the processes in play, by name."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def snapshot(self) -> dict[str, float]:
        """CPU seconds per process name; NaN for a process that cannot be read (gone)."""
        out = {}
        for name, process in self.processes.items():
            try:
                times = process.cpu_times()
                out[name] = times.user + times.system
            except psutil.Error:
                out[name] = float("nan")
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds per process between two snapshots."""
        return {name: after[name] - before[name] for name in before}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def have_broke() -> bool:
    """Whether `broke` is installed next to this interpreter; says what to do on stderr when not."""
    if BROKE_EXE.exists():
        return True
    print("error: run with the venv's interpreter (.venv/bin/python), where `broke` is installed",
          file=sys.stderr)
    return False


def broke(home: Path, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run `broke ARGS` with BROKE_HOME=home and no stdin; output captured as text."""
    env = {**os.environ, "BROKE_HOME": str(home)}
    return subprocess.run([str(BROKE_EXE), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def must(result: subprocess.CompletedProcess[str], what: str) -> str:
    """The command's stdout; RuntimeError (with its output) when it exited non-zero."""
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or "(no log)"."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def print_log_tails(logs: Iterable[Path]) -> None:
    """Each log's tail on stderr, under a `--- name (tail) ---` line."""
    for log in logs:
        print(f"--- {log.name} (tail) ---\n{tail(log)}", file=sys.stderr)


def start_gateway(home: Path, port: int, what: str = "the gateway") -> None:
    """`broke start --port PORT`, announced and timed; RuntimeError when it fails."""
    print(f"starting {what} on 127.0.0.1:{port} (LiteLLM takes a while) ...", flush=True)
    t0 = time.perf_counter()
    must(broke(home, "start", "--port", str(port)), "broke start")
    print(f"gateway up in {time.perf_counter() - t0:.1f} s", flush=True)


def gateway_record(home: Path) -> tuple[dict[str, Any], str]:
    """The running gateway's record (run/gateway.json) and LiteLLM's internal master key."""
    record = json.loads((home / "run" / "gateway.json").read_text())
    master = (home / "run" / "litellm_master_key").read_text().strip()
    return record, master


def print_machine_and_command(details: str) -> None:
    """The `machine:` and `command:` lines that end a report; `details` follows the OS name."""
    print(f"machine: {os.cpu_count()} CPU core(s), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}{details}")
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


def clean_up(home: Path, started: bool, keep: bool) -> None:
    """`broke stop` when the gateway was started (a warning if it fails); then remove home unless kept."""
    if started:
        stopped = broke(home, "stop", timeout=60)
        if stopped.returncode != 0:
            print(f"warning: broke stop exited {stopped.returncode}: {stopped.stderr.strip()}", file=sys.stderr)
    if keep:
        print(f"kept BROKE_HOME={home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


def exit_status(errors: list[str]) -> int:
    """1 after listing the first failures on stderr, 0 when there were none."""
    if errors:
        print(f"\n{len(errors)} request(s) or step(s) failed; the first ones:", file=sys.stderr)
        for line in errors[:10]:
            print("  " + line, file=sys.stderr)
        return 1
    return 0




def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB (0 for no process)."""
    return psutil.Process(pid).memory_info().rss / 2**20 if pid > 0 else 0.0
