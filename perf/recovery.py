"""Recovery: seconds from `kill -9` of each kind of broke process to its slot answering 200 again.

Run with the venv's interpreter:

    .venv/bin/python perf/recovery.py [--runs N] [--timeout S] [--keep-home]

Setup: a temporary BROKE_HOME, one tiny local model (`broke local make-tiny … --add tiny`), every
slot of the Claude family on it (`broke swap sonnet=mlx/tiny`), `broke start --port P --wait` (the
worker, the front proxy and LiteLLM, which Anthropic messages to a local model go through);
`broke stop` always runs at the end.

Each run kills one process by the PID its record holds (`run/workers/*.json`, `run/workers/*.server`,
`run/gateway.json`) and then asks the slot every 0.1 s, without doing anything else, until an answer
is 200 (or --timeout passes). The kinds, in this order:

  worker supervisor  `python -m broke.local.supervise` (its mlx_lm.server dies with it): the
                     gateway brings the group back; chat completions, which go to the worker directly.
  model server       mlx_lm.server alone: its supervisor restarts it; chat completions.
  front proxy        the gateway's front: nothing watches it, so the figure is for `broke start` run
                     at once by this script (the user's command), kill to 200 including that command.
  LiteLLM            the internal LiteLLM proxy; Anthropic messages (translated by LiteLLM). Last, as
                     a LiteLLM that does not come back leaves the slot's backend cooling down.

The median of --runs runs per kind is printed (a kind whose run reaches --timeout is not run again:
"did not answer"). Goal: <= 15 s for a worker.
Exit status: 0 when the figures were measured (whatever they are), 1 when the setup failed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from harness import (
    broke,
    clean_up,
    exit_status,
    free_port,
    have_broke,
    must,
    print_log_tails,
    print_machine_and_command,
)

ANSWER = "recovered"
GOAL_WORKER_S = 15.0


def kill(pid: int) -> None:
    """kill -9 of one process broke recorded, waiting until it is dead (gone, or a zombie: a process the
    front proxy started is reaped only when it starts the next one)."""
    process = psutil.Process(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise RuntimeError(f"pid {pid} still runs 10 s after SIGKILL")


class Gateway:
    """The running gateway of `home`, as its records say, and one request per client API."""

    def __init__(self, home: Path) -> None:
        self.home = home
        connect = json.loads(must(broke(home, "connect", "--json"), "broke connect"))
        self.url, self.token = connect["base_url"], connect["token"]

    def worker(self) -> dict:
        [record] = [json.loads(p.read_text()) for p in (self.home / "run" / "workers").glob("*.json")]
        return record

    def server_pid(self) -> int:
        [path] = (self.home / "run" / "workers").glob("*.server")
        return int(json.loads(path.read_text())["pid"])

    def gateway(self) -> dict:
        return json.loads((self.home / "run" / "gateway.json").read_text())

    def chat(self) -> int:
        body = {"model": "sonnet", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        return self._status("/v1/chat/completions", body, {"authorization": f"Bearer {self.token}"})

    def messages(self) -> int:
        body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        return self._status("/v1/messages", body, {"x-api-key": self.token, "anthropic-version": "2023-06-01"})

    def _status(self, path: str, body: dict, headers: dict[str, str]) -> int:
        try:
            return httpx.post(self.url + path, json=body, headers=headers, timeout=10).status_code
        except httpx.HTTPError:
            return 0


def until_answered(ask: Callable[[], int], began: float, timeout: float) -> float | None:
    """Seconds from `began` to the first 200 of `ask`, or None after `timeout`."""
    while time.monotonic() - began < timeout:
        if ask() == 200:
            return time.monotonic() - began
        time.sleep(0.1)
    return None


def measure(gateway: Gateway, runs: int, timeout: float) -> dict[str, list[float | None]]:
    home = gateway.home

    def front_with_start() -> None:
        kill(gateway.gateway()["front"]["pid"])
        must(broke(home, "start"), "broke start")

    kinds: list[tuple[str, Callable[[], None], Callable[[], int]]] = [
        ("worker supervisor", lambda: kill(gateway.worker()["pid"]), gateway.chat),
        ("model server", lambda: kill(gateway.server_pid()), gateway.chat),
        ("front proxy + broke start", front_with_start, gateway.chat),
        ("LiteLLM", lambda: kill(gateway.gateway()["litellm"]["pid"]), gateway.messages),
    ]
    figures: dict[str, list[float | None]] = {}
    for name, killer, ask in kinds:
        figures[name] = []
        for run in range(runs):
            if until_answered(ask, time.monotonic(), 60) is None:
                figures[name].append(None)
                print(f"{name}: the slot did not answer before the kill; not measured", flush=True)
                break
            time.sleep(1.0)  # settled
            began = time.monotonic()
            killer()
            seconds = until_answered(ask, began, timeout)
            figures[name].append(seconds)
            print(f"{name} run {run + 1}: " + (f"{seconds:.2f} s" if seconds is not None else
                                                f"no 200 within {timeout:.0f} s"), flush=True)
            if seconds is None:
                break
    return figures


def report(figures: dict[str, list[float | None]], timeout: float) -> None:
    print("\nseconds from kill -9 to the slot's first 200 (median of the runs):")
    for name, values in figures.items():
        measured = [v for v in values if v is not None]
        if len(measured) < len(values):
            line = f"did not answer within {timeout:.0f} s"
        else:
            line = f"{statistics.median(measured):6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in measured)})"
        goal = ""
        if name == "worker supervisor" and measured and len(measured) == len(values):
            goal = "  PASS" if statistics.median(measured) <= GOAL_WORKER_S else "  FAIL"
            goal += f" (goal <= {GOAL_WORKER_S:.0f} s)"
        print(f"  {name:<26} {line}{goal}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="kills per process kind (3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a 200 after a kill (60)")
    parser.add_argument("--keep-home", action="store_true", help="leave the temporary BROKE_HOME (logs) behind")
    args = parser.parse_args()
    if args.runs < 1 or args.timeout <= 0:
        parser.error("--runs and --timeout must be positive")
    if not have_broke():
        return 1
    home = Path(tempfile.mkdtemp(prefix="broke-recovery-"))
    started = False
    errors: list[str] = []
    try:
        print(f"BROKE_HOME={home}")
        must(broke(home, "local", "make-tiny", str(home / "tiny"), "--answer", ANSWER, "--add", "tiny"),
             "broke local make-tiny")
        must(broke(home, "swap", "sonnet=mlx/tiny"), "broke swap")
        started = True
        must(broke(home, "start", "--port", str(free_port()), "--wait"), "broke start")
        figures = measure(Gateway(home), args.runs, args.timeout)
        report(figures, args.timeout)
        print_machine_and_command("")
    except Exception as exc:  # setup failed: say why, with the logs
        print(f"error: {exc}", file=sys.stderr)
        print_log_tails(sorted((home / "run").glob("*.log")))
        errors.append(str(exc))
    finally:
        clean_up(home, started, args.keep_home)
    return exit_status(errors)


if __name__ == "__main__":
    sys.exit(main())
