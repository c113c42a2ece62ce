"""Blips: how soon a single-backend slot answers again after an upstream blip, and after broke's own
LiteLLM is killed.

Run with the venv's interpreter:

    .venv/bin/python perf/blips.py [--repeats N]

Setup: a temporary BROKE_HOME whose `sonnet` has one backend (one key) on the fake provider
(tests/fake_provider.py, in this process), `broke start --wait`; `broke stop` always runs at the end.

Each case is repeated N times; the figure is the time from the blip's end (the failing answer has
arrived, or LiteLLM was killed) to the first 200, with requests sent back to back (each request
is one attempt of a client), and how many requests that took:
  500 once        the only backend answers 500 once
  429 once        the only key is rate limited once (Retry-After: 1)
  500 x 3         three 500s in a row (three requests), then healthy
  LiteLLM -9      kill -9 of LiteLLM; then an Anthropic messages request (translated through LiteLLM)
Goal: the next request answers (1 request) for the upstream blips; LiteLLM back within its start time.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import ROOT, broke, free_port, gateway_record, must, print_machine_and_command

sys.path.insert(0, str(ROOT / "tests"))
from fake_provider import FakeProvider

CHAT = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def until_answered(client: httpx.Client, path: str, body: dict[str, object], limit_s: float) -> tuple[float, int]:
    """Seconds to the first 200 and the number of requests it took, sending back to back."""
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < limit_s:
        count += 1
        if client.post(path, json=body).status_code == 200:
            return time.perf_counter() - start, count
    raise RuntimeError(f"no 200 on {path} within {limit_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="times each case runs (3)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="broke-blips-")) / "home"
    home.mkdir()
    (home / ".env").write_text("FAKE_API_KEY=key-one\n")
    os.chmod(home / ".env", 0o600)
    results: dict[str, list[tuple[float, int]]] = {}
    with FakeProvider() as fake:
        must(broke(home, "backend", "add", "fake/model-a", "--provider", "openai-compatible", "--api-base",
                   fake.base_url, "--model", "model-a", "--key-env", "FAKE_API_KEY"), "backend add")
        must(broke(home, "swap", "sonnet=fake/model-a"), "swap")
        port = free_port()
        must(broke(home, "start", "--port", str(port), "--wait"), "broke start")
        token = must(broke(home, "connect", "--json"), "connect").split('"token": "')[1].split('"')[0]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180,
                              headers={"authorization": f"Bearer {token}"}) as client:
                for _ in range(args.repeats):
                    for name, mode, times in (("500 once", "500", 1), ("429 once", "429", 1), ("500 x 3", "500", 3)):
                        fake.fail(mode, times=times)
                        for _ in range(times):
                            client.post("/v1/chat/completions", json=CHAT)  # the blip, answered as it is
                        results.setdefault(name, []).append(until_answered(client, "/v1/chat/completions", CHAT, 60))
                        fake.clear()
                    until_answered(client, "/v1/messages", MESSAGES, 180)  # LiteLLM up and warm
                    record, _ = gateway_record(home)
                    os.kill(record["litellm"]["pid"], signal.SIGKILL)
                    results.setdefault("LiteLLM -9", []).append(until_answered(client, "/v1/messages", MESSAGES, 180))
        finally:
            broke(home, "stop", timeout=60)
    print(f"\n{'case':<12} {'median s':>9} {'max s':>7}  requests (each run)")
    for name, runs in results.items():
        seconds = [s for s, _ in runs]
        print(f"{name:<12} {statistics.median(seconds):9.3f} {max(seconds):7.3f}  {[n for _, n in runs]}")
    print_machine_and_command("")
    return 0


if __name__ == "__main__":
    sys.exit(main())
