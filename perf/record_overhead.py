"""What recording a non-`auto` slot costs (`broke router record`): a real native gateway before the fast fake
(perf/fast_fake.py), chat completions to `sonnet` carrying a prompt of --chars characters, in three modes:

  off    sonnet not recorded (the default): the request pays one look at the state's `router.record`;
  vector sonnet recorded: the record's prompt vector is estimated by `auto`'s router on the records writer's
         thread after the answer has ended;
  text   sonnet recorded with --prompt-text on: the text (cut at 8,000 characters) is written too.

Run with the venv's interpreter:

    .venv/bin/python perf/record_overhead.py [--requests N] [--rounds R] [--chars C]

The modes take turns in --rounds blocks of N sequential requests (rotating order, after a few untimed
requests once the mode is set), so that machine noise hits them alike; --gap-ms spaces the requests (with
none, each request meets the writer thread's work for the one before). Reported per mode: client latency
p50/p95 and the gateway process's CPU per request (which includes the writer thread's estimate), and, in
this process, what the router's estimate of one such prompt costs (p50/p99). Exit status 1 when a request
failed or the records do not match the modes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import httpx

from broke.router.learned import load
from broke.router.outcomes import count
from fast_fake import running as fast_fake
from gateway_overhead import setup_home
from harness import (
    CpuMeter,
    broke,
    clean_up,
    exit_status,
    free_port,
    gateway_record,
    have_broke,
    must,
    percentile,
    print_log_tails,
    print_machine_and_command,
)

MODES = {"off": ("--auto-only", "--prompt-text", "off"), "vector": ("--slot", "sonnet", "--prompt-text", "off"),
         "text": ("--slot", "sonnet", "--prompt-text", "on")}
WORDS = ("refactor the parser so that nested quotes survive a round trip through the config loader and "
         "add tests for the edge cases where a key repeats or a table is empty").split()


def prompt_of(chars: int, rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:chars]


def estimate_cost(home: Path, prompts: list[str]) -> tuple[float, float]:
    """p50 and p99 ms of the router's estimate of one prompt (after a warm-up), in this process."""
    router = load(home)
    router.estimate(prompts[0])
    took = []
    for prompt in prompts:
        t0 = time.perf_counter()
        router.estimate(prompt)
        took.append((time.perf_counter() - t0) * 1000)
    return percentile(took, 50), percentile(took, 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed sequential requests per block (200)")
    parser.add_argument("--rounds", type=int, default=3, help="blocks per mode (3)")
    parser.add_argument("--chars", type=int, default=2000, help="characters of each prompt (2000)")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="pause between requests (0: back to back, the next request meets the writer's work)")
    args = parser.parse_args()
    if min(args.requests, args.rounds, args.chars) < 1:
        parser.error("counts must be positive")
    if not have_broke():
        return 1
    os.environ.pop("FAKE_API_KEY", None)
    rng = random.Random(7)
    errors: list[str] = []
    home, started = None, False
    latency: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, float] = dict.fromkeys(MODES, 0.0)
    try:
        with fast_fake() as fake_url:
            home = setup_home(fake_url)
            port = free_port()
            must(broke(home, "start", "--port", str(port), "--wait"), "broke start")
            started = True
            record, _ = gateway_record(home)
            meter = CpuMeter({"front": record["front"]["pid"]})
            token = json.loads((home / "run" / "tokens.json").read_text())["client"]
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=30) as client:

                def ask(text: str) -> float:
                    t0 = time.perf_counter()
                    answer = client.post(url, json={"model": "sonnet",
                                                    "messages": [{"role": "user", "content": text}]})
                    took = (time.perf_counter() - t0) * 1000
                    if answer.status_code != 200:
                        errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    return took

                names = list(MODES)
                for round_ in range(args.rounds):
                    for mode in names[round_ % len(names):] + names[:round_ % len(names)]:
                        must(broke(home, "router", "record", *MODES[mode]), "broke router record")
                        for _ in range(10):
                            ask(prompt_of(args.chars, rng))
                        prompts = [prompt_of(args.chars, rng) for _ in range(args.requests)]
                        before = meter.snapshot()
                        for p in prompts:
                            latency[mode].append(ask(p))
                            time.sleep(args.gap_ms / 1000)
                        time.sleep(0.5)  # the writer thread's work after the last answer
                        cpu[mode] += meter.delta(before, meter.snapshot())["front"]
            time.sleep(1.0)
            recorded = count(home)
            expected = 2 * args.rounds * (args.requests + 10)
            if recorded != expected:
                errors.append(f"{recorded} outcome records, expected {expected} (the vector and text blocks)")
            p50, p99 = estimate_cost(home, [prompt_of(args.chars, rng) for _ in range(500)])
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        if home is not None:
            print_log_tails([home / "run" / "gateway.log"])
        errors.append(str(exc))
    finally:
        if home is not None:
            clean_up(home, started, False)
    if not errors:
        n = args.rounds * args.requests
        print(f"\nsonnet, {args.chars}-character prompts, {n} timed sequential requests per mode, "
              f"{args.gap_ms:g} ms apart:")
        print(f"{'mode':8} {'p50 ms':>8} {'p95 ms':>8} {'gateway CPU ms/request':>24}")
        for mode in MODES:
            print(f"{mode:8} {percentile(latency[mode], 50):8.2f} {percentile(latency[mode], 95):8.2f} "
                  f"{cpu[mode] * 1000 / n:24.3f}")
        print(f"router estimate of one {args.chars}-character prompt (this process): p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms")
        print_machine_and_command(f", {args.rounds} rounds x {args.requests} requests")
    return exit_status(errors)


if __name__ == "__main__":
    sys.exit(main())
