"""CLI start-up latency: `broke route sonnet` (and other read commands) versus bare `python -c pass`.

Run with the venv's interpreter so every command uses the same Python:

    .venv/bin/python perf/cli_latency.py [--runs N] [--all]

Each command runs N times (default 20) as a subprocess with stdout discarded and
BROKE_HOME pointing at a fresh temporary directory, so the user's state is never
read or written, and a placeholder ANTHROPIC_API_KEY so that sonnet resolves. The
runs of the commands are interleaved so that machine noise affects all alike.
PYTHONDONTWRITEBYTECODE is dropped from their environment: the untimed warm-up
writes the .pyc files a user's runs would find, instead of every run compiling
broke's sources again.

Printed per command: the median wall time, the fastest run, the median CPU time
(user + system; steadier than wall time on a busy machine) and the median wall
time above bare Python's. Target: `broke route sonnet` at most 80 ms above bare
Python (median wall time). `--all` also times other read commands (list, explain,
models, status, key-policy); they are reported, not judged. Exit status: 0 on
PASS, 1 on FAIL or if a broke command exited non-zero (the timing is still
reported, with the exit code).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 80.0
TARGET = ("route", "sonnet")
MORE = (("list",), ("explain", "sonnet"), ("models",), ("status",), ("key-policy",))


def time_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run `cmd` once with its output discarded; return (wall ms, CPU ms, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = (time.perf_counter() - start) * 1000.0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000.0
    return wall, cpu, proc.returncode


def last_line(cmd: list[str], env: dict[str, str]) -> str:
    """The last line a failing command printed (stderr first), to say why it failed."""
    out = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    text = (out.stderr or out.stdout).decode(errors="replace").strip().splitlines()
    return text[-1] if text else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    parser.add_argument("--all", action="store_true", help="also time other read commands (not judged)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    bin_dir = Path(sys.executable).parent
    broke = bin_dir / ("broke.exe" if os.name == "nt" else "broke")
    if not broke.exists():
        print(f"error: {broke} not found; run ./install.sh first and use .venv/bin/python", file=sys.stderr)
        return 1

    bare_cmd = [sys.executable, "-c", "pass"]
    commands = [bare_cmd] + [[str(broke), *words] for words in (TARGET, *(MORE if args.all else ()))]
    home = tempfile.mkdtemp(prefix="broke-bench-")
    # A placeholder key so the default sonnet backend resolves: the timing covers the normal path.
    env = dict(os.environ, BROKE_HOME=home, ANTHROPIC_API_KEY="bench-placeholder-not-a-key")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    codes = [0] * len(commands)
    why = [""] * len(commands)
    try:
        for cmd in commands:  # one untimed warm-up each (disk cache, .pyc files)
            time_once(cmd, env)
        for _ in range(args.runs):
            for i, cmd in enumerate(commands):
                wall, cpu, rc = time_once(cmd, env)
                walls[i].append(wall)
                cpus[i].append(cpu)
                codes[i] = rc or codes[i]
        for i, cmd in enumerate(commands):
            if codes[i]:
                why[i] = last_line(cmd, env)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    bare_med = statistics.median(walls[0])
    print(f"{args.runs} runs each; wall and CPU in ms")
    print(f"{'command':<26} {'median':>8} {'fastest':>8} {'cpu':>8} {'above bare':>11}")
    for i, cmd in enumerate(commands):
        name = "python -c pass" if i == 0 else "broke " + " ".join(cmd[1:])
        med = statistics.median(walls[i])
        above = "" if i == 0 else f"{med - bare_med:11.1f}"
        print(f"{name:<26} {med:8.1f} {min(walls[i]):8.1f} {statistics.median(cpus[i]):8.1f} {above}")
        if codes[i]:
            print(f"  note: exited with code {codes[i]}" + (f": {why[i]}" if why[i] else ""))
    diff = statistics.median(walls[1]) - bare_med
    ok = diff <= TARGET_MS
    print(f"target: `broke {' '.join(TARGET)}` at most {TARGET_MS:.0f} ms above bare Python: "
          f"{diff:.1f} ms, {'PASS' if ok else 'FAIL'}")
    return 0 if ok and not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
