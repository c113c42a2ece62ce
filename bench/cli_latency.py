"""CLI start-up latency: `broke route sonnet` versus bare `python -c pass`.

Run with the venv's interpreter so both commands use the same Python:

    .venv/bin/python bench/cli_latency.py [--runs N]

Each command runs N times (default 20) as a subprocess with stdout discarded and
BROKE_HOME pointing at a fresh temporary directory, so the user's state is never
read or written, and a placeholder ANTHROPIC_API_KEY so that sonnet resolves. The runs of the two commands are interleaved so that machine
noise affects both alike. Target: broke's median is under 150 ms above bare
Python's median. Exit status: 0 on PASS, 1 on FAIL or if broke exited non-zero
(the timing is still reported in that case, with broke's exit code).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 150.0


def time_once(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run `cmd` once with its output discarded; return (wall ms, exit code)."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return (time.perf_counter() - start) * 1000.0, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    bin_dir = Path(sys.executable).parent
    broke = bin_dir / ("broke.exe" if os.name == "nt" else "broke")
    if not broke.exists():
        print(f"error: {broke} not found; run ./install.sh first and use .venv/bin/python", file=sys.stderr)
        return 1

    broke_cmd = [str(broke), "route", "sonnet"]
    bare_cmd = [sys.executable, "-c", "pass"]
    home = tempfile.mkdtemp(prefix="broke-bench-")
    # A placeholder key so the default sonnet backend resolves: the timing covers the normal path.
    env = dict(os.environ, BROKE_HOME=home, ANTHROPIC_API_KEY="bench-placeholder-not-a-key")
    try:
        # One untimed warm-up each (disk cache, .pyc files), then interleaved timed runs.
        time_once(bare_cmd, env)
        time_once(broke_cmd, env)
        broke_ms: list[float] = []
        bare_ms: list[float] = []
        bad_rc, bad_msg = 0, ""
        for _ in range(args.runs):
            bare_ms.append(time_once(bare_cmd, env)[0])
            ms, rc = time_once(broke_cmd, env)
            broke_ms.append(ms)
            bad_rc = rc or bad_rc
        if bad_rc:
            # One untimed run that keeps the output, to say why it failed.
            out = subprocess.run(broke_cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True)
            text = (out.stderr or out.stdout).decode(errors="replace").strip().splitlines()
            bad_msg = text[-1] if text else ""
    finally:
        shutil.rmtree(home, ignore_errors=True)

    broke_med = statistics.median(broke_ms)
    bare_med = statistics.median(bare_ms)
    diff = broke_med - bare_med
    ok = diff < TARGET_MS
    print(f"broke route sonnet : median {broke_med:7.1f} ms over {args.runs} runs")
    print(f"python -c pass     : median {bare_med:7.1f} ms over {args.runs} runs")
    print(f"difference         : {diff:7.1f} ms (target: under {TARGET_MS:.0f} ms above bare Python)")
    if bad_rc:
        print(f"note: `broke route sonnet` exited with code {bad_rc}" + (f": {bad_msg}" if bad_msg else ""))
    print("PASS" if ok else "FAIL")
    return 0 if ok and not bad_rc else 1


if __name__ == "__main__":
    sys.exit(main())
