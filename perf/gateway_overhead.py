"""Gateway overhead: what broke adds to a small chat completion, forwarded natively or through LiteLLM.

Run with the venv's interpreter:

    .venv/bin/python perf/gateway_overhead.py [--requests N] [--concurrency C] [--fake-in-process]

Four paths serve the same tiny non-streaming chat completion, in one run:

  (a) direct          the fake OpenAI-compatible provider (tests/fake_provider.py), in a child
                      process of its own (or in this one with --fake-in-process);
  (b) litellm         broke's own LiteLLM, at its internal port with the internal master key;
  (c) broke native    the front proxy forwarding the request itself (chat completions to an
                      OpenAI-compatible backend need no translation);
  (d) broke+litellm   a second gateway started with BROKE_NATIVE=0, whose front proxy sends every
                      request through its LiteLLM (the path of requests that need translation).

Setup: two temporary BROKE_HOMEs with a custom backend fake/bench pointing at the fake, `sonnet`
swapped to it, its key in .env, and `broke start --wait`; `broke stop` always runs at the end.
(b) is the LiteLLM of gateway (d).

Sequential: N timed requests per path (after a warm-up), one at a time, the paths interleaved
request by request in rotating order, so that machine noise hits them alike. Streaming: time to
the first streamed byte, sequential, for (a), (c) and (d). Concurrent: after an untimed burst per
path, C clients (asyncio + httpx.AsyncClient) send M requests per path, in --rounds blocks whose
path order alternates; throughput = requests / summed wall time. Also reported: how long `broke
start` takes until the front proxy answers, and the front proxy's and LiteLLM's resident memory.

Targets: broke native adds <= 1.5 ms p50 over direct (c - a, sequential); its throughput under 16
clients >= 5 x 65.7 req/s (broke's figure before native forwarding); its time to first streamed
byte <= direct + 2 ms. Exit status: 0 when every request succeeded (PASS or FAIL alike: this is a
benchmark that reports), 1 when a request failed or a gateway could not be set up.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import (
    CpuMeter,
    RequestFailed,
    broke,
    clean_up,
    exit_status,
    fake_provider,
    free_port,
    gateway_record,
    have_broke,
    must,
    percentile,
    print_log_tails,
    print_machine_and_command,
    rss_mb,
)

NATIVE_ADDED_TARGET_MS = 1.5
THROUGHPUT_BEFORE = 65.7  # req/s, broke under 16 clients before native forwarding (issue 14)
THROUGHPUT_TARGET = 5.0  # x THROUGHPUT_BEFORE
TTFB_ADDED_TARGET_MS = 2.0
FAKE_KEY = "bench-key"  # a placeholder for the fake provider, not a real key
BACKEND = "fake/bench"
SLOT = "sonnet"
PROMPT = [{"role": "user", "content": "ping"}]


@dataclass
class Target:
    """One way to reach a chat completion: URL, model name, auth, and what a good answer shows."""

    key: str
    label: str
    url: str
    model: str
    token: str
    check_header: tuple[str, str] | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.body = json.dumps({"model": self.model, "messages": PROMPT, "max_tokens": 8}).encode()
        self.headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json"}


def check(target: Target, response: httpx.Response) -> None:
    """Raise RequestFailed unless this is a real answer from the fake."""
    if response.status_code != 200:
        raise RequestFailed(f"HTTP {response.status_code}: {response.text[:300]}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RequestFailed(f"not a chat completion: {response.text[:300]}") from None
    if not str(content).startswith("fake:"):
        raise RequestFailed(f"unexpected answer {content!r}")
    if target.check_header:
        name, expected = target.check_header
        if response.headers.get(name) != expected:
            raise RequestFailed(f"{name} = {response.headers.get(name)!r}, expected {expected!r}")


# ---- load generation ------------------------------------------------------------------------------

@dataclass
class Results:
    seq: dict[str, list[float]]  # ms
    seq_cpu: dict[str, float]  # process -> CPU seconds over the timed sequential part
    conc: dict[str, list[float]]  # ms
    rounds: dict[str, list[tuple[int, float]]]  # (requests, wall seconds) per round
    conc_cpu: dict[str, dict[str, float]]  # target -> process -> CPU seconds
    errors: list[str]


def sequential(targets: list[Target], warmup: int, count: int, meter: CpuMeter,
               errors: list[str]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies in ms per target; the targets take turns request by request, in rotating order."""
    latencies: dict[str, list[float]] = {t.key: [] for t in targets}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = {t.key: httpx.Client(limits=limits, timeout=30.0) for t in targets}

    def run(i: int, record: bool) -> None:
        shift = i % len(targets)
        for target in targets[shift:] + targets[:shift]:
            started = time.perf_counter()
            try:
                response = clients[target.key].post(target.url, content=target.body, headers=target.headers)
                elapsed = (time.perf_counter() - started) * 1000.0
                check(target, response)
            except (httpx.HTTPError, RequestFailed) as exc:
                errors.append(f"sequential {target.label}: {exc!r}"[:400])
                continue
            if record:
                latencies[target.key].append(elapsed)

    try:
        for i in range(warmup):
            run(i, False)
        before = meter.snapshot()
        for i in range(count):
            run(i, True)
        cpu = CpuMeter.delta(before, meter.snapshot())
    finally:
        for client in clients.values():
            client.close()
    return latencies, cpu


async def _concurrent_block(target: Target, concurrency: int, count: int, latencies: list[float],
                            errors: list[str], meter: CpuMeter) -> tuple[float, dict[str, float]]:
    """Send `count` requests with `concurrency` workers; returns (wall seconds, CPU per process)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        async def one(record: bool) -> None:
            started = time.perf_counter()
            try:
                response = await client.post(target.url, content=target.body, headers=target.headers)
                elapsed = (time.perf_counter() - started) * 1000.0
                check(target, response)
            except (httpx.HTTPError, RequestFailed) as exc:
                errors.append(f"concurrent {target.label}: {exc!r}"[:400])
                return
            if record:
                latencies.append(elapsed)

        # Warm-up (untimed): open the connections.
        await asyncio.gather(*(one(False) for _ in range(concurrency * 2)))

        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one(True)

        before = meter.snapshot()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        return wall, CpuMeter.delta(before, meter.snapshot())


def measure(targets: list[Target], args: argparse.Namespace, meter: CpuMeter) -> Results:
    errors: list[str] = []
    print(f"sequential: {args.warmup} warm-up + {args.requests} timed requests per path ...", flush=True)
    seq, seq_cpu = sequential(targets, args.warmup, args.requests, meter, errors)

    print(f"concurrent: {args.concurrency} clients x {args.concurrent_requests} requests per path ...",
          flush=True)
    conc: dict[str, list[float]] = {t.key: [] for t in targets}
    rounds: dict[str, list[tuple[int, float]]] = {t.key: [] for t in targets}
    conc_cpu: dict[str, dict[str, float]] = {t.key: dict.fromkeys(meter.processes, 0.0) for t in targets}
    # Untimed first: LiteLLM's first burst of concurrent requests is markedly slower (its upstream
    # connections and the fake's threads get made), which would penalise whichever path came first.
    for target in targets:
        asyncio.run(_concurrent_block(target, args.concurrency, max(64, 4 * args.concurrency), [], errors, meter))
    per_round = max(1, args.concurrent_requests // args.rounds)
    for r in range(args.rounds):
        for target in targets if r % 2 == 0 else list(reversed(targets)):
            before = len(conc[target.key])
            wall, cpu = asyncio.run(_concurrent_block(target, args.concurrency, per_round, conc[target.key],
                                                      errors, meter))
            rounds[target.key].append((len(conc[target.key]) - before, wall))
            for name, seconds in cpu.items():
                conc_cpu[target.key][name] += seconds
    return Results(seq, seq_cpu, conc, rounds, conc_cpu, errors)


# ---- the gateway ----------------------------------------------------------------------------------

# ---- streaming: time to first byte ------------------------------------------------------------------

def first_byte(targets: list[Target], count: int, errors: list[str]) -> dict[str, list[float]]:
    """Milliseconds to the first streamed body byte, per target, paths interleaved."""
    out: dict[str, list[float]] = {t.key: [] for t in targets}
    clients = {t.key: httpx.Client(timeout=30.0) for t in targets}
    try:
        for i in range(count + 5):
            shift = i % len(targets)
            for target in targets[shift:] + targets[:shift]:
                body = json.loads(target.body) | {"stream": True}
                started = time.perf_counter()
                try:
                    with clients[target.key].stream("POST", target.url, json=body, headers=target.headers) as r:
                        elapsed = None
                        for _ in r.iter_raw():
                            if elapsed is None:
                                elapsed = (time.perf_counter() - started) * 1000.0
                    if r.status_code != 200:
                        raise RequestFailed(f"HTTP {r.status_code}")
                except (httpx.HTTPError, RequestFailed) as exc:
                    errors.append(f"stream {target.label}: {exc!r}"[:400])
                    continue
                if i >= 5 and elapsed is not None:
                    out[target.key].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    return out


# ---- report ---------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args: argparse.Namespace, targets: list[Target], res: Results, ttfb: dict[str, list[float]],
           setup: dict[str, float]) -> None:
    rate = {k: sum(n for n, _ in r) / sum(w for _, w in r) for k, r in res.rounds.items()}
    print()
    print(f"sequential: {args.requests} requests per path after {args.warmup} warm-up, paths interleaved")
    timed = sum(n for n, _ in res.rounds["c"])
    print(f"concurrent: {args.concurrency} clients, {timed} timed requests per path in {args.rounds} "
          "round(s), alternating path order, after an untimed burst per path")
    print()
    header = (f"{'path':<36} {'seq p50 ms':>10} {'seq p99 ms':>10} │ {'req/s':>7} "
              f"{'conc p50 ms':>11} {'conc p99 ms':>11} │ {'TTFB p50 ms':>11}")
    print(header)
    print("─" * len(header))
    for t in targets:
        s, c = res.seq[t.key], res.conc[t.key]
        first = f"{percentile(ttfb[t.key], 50):>11.2f}" if ttfb.get(t.key) else f"{'-':>11}"
        print(f"{t.label:<36} {percentile(s, 50):>10.2f} {percentile(s, 99):>10.2f} │ "
              f"{rate[t.key]:>7.1f} {percentile(c, 50):>11.2f} {percentile(c, 99):>11.2f} │ {first}")
    print()
    print("concurrent throughput per round (req/s): " + "; ".join(
        f"{t.key} " + ", ".join(f"{n / w:.0f}" for n, w in res.rounds[t.key]) for t in targets))
    n_c, n_d = sum(n for n, _ in res.rounds["c"]), sum(n for n, _ in res.rounds["d"])
    print("CPU per request under load (ms, user+system): "
          f"front proxy native {res.conc_cpu['c']['front'] / n_c * 1000:.2f}; "
          f"front proxy + LiteLLM {res.conc_cpu['d']['front_d'] / n_d * 1000:.2f} + "
          f"{res.conc_cpu['d']['litellm'] / n_d * 1000:.2f}")

    a, b, c, d = (res.seq[k] for k in "abcd")
    native_added = percentile(c, 50) - percentile(a, 50)
    ttfb_added = percentile(ttfb["c"], 50) - percentile(ttfb["a"], 50)
    goal = THROUGHPUT_TARGET * THROUGHPUT_BEFORE
    print()
    print("derived:")
    print(f"  LiteLLM's own added latency (b - a), sequential p50: {percentile(b, 50) - percentile(a, 50):+.2f} ms")
    print(f"  broke through LiteLLM (d - a), sequential p50: {percentile(d, 50) - percentile(a, 50):+.2f} ms")
    print(f"  broke native added latency (c - a), sequential p50: {native_added:+.2f} ms   "
          f"[target <= {NATIVE_ADDED_TARGET_MS:.1f} ms] {verdict(native_added <= NATIVE_ADDED_TARGET_MS)}")
    print(f"  broke native throughput under {args.concurrency} clients: {rate['c']:.1f} req/s = "
          f"{rate['c'] / THROUGHPUT_BEFORE:.1f} x {THROUGHPUT_BEFORE} (before)   "
          f"[target >= {goal:.0f} req/s] {verdict(rate['c'] >= goal)}")
    print(f"  broke native time to first streamed byte (c - a), p50: {ttfb_added:+.2f} ms   "
          f"[target <= {TTFB_ADDED_TARGET_MS:.1f} ms] {verdict(ttfb_added <= TTFB_ADDED_TARGET_MS)}")
    print(f"  gateway start: `broke start` returned in {setup['start_native_s']:.2f} s (front proxy answering; "
          f"LiteLLM in the background), {setup['start_litellm_s']:.2f} s with --wait for LiteLLM")
    print(f"  resident memory: front proxy {setup['front_mb']:.0f} MB; with LiteLLM "
          f"{setup['front_mb'] + setup['litellm_mb']:.0f} MB (LiteLLM {setup['litellm_mb']:.0f} MB)")
    print()
    print_machine_and_command(
        ". The load generator, the fake provider "
        f"({'in the load generator: one GIL' if args.fake_in_process else 'its own process'}), LiteLLM "
        "and the front proxies all share these cores, so absolute numbers are noisy: compare the "
        "paths with each other, and rerun to see the spread.")


# ---- main -----------------------------------------------------------------------------------------

def setup_home(fake_url: str) -> Path:
    """A temporary BROKE_HOME whose sonnet slot is the fake, its key in .env."""
    home = Path(tempfile.mkdtemp(prefix="broke-bench-gw-"))
    env_file = home / ".env"
    env_file.write_text(f"FAKE_API_KEY={FAKE_KEY}\n")
    env_file.chmod(0o600)
    must(broke(home, "backend", "add", BACKEND, "--provider", "openai-compatible",
               "--api-base", fake_url, "--model", "bench", "--key-env", "FAKE_API_KEY"), "broke backend add")
    must(broke(home, "swap", SLOT, BACKEND), "broke swap")
    return home


def timed_start(home: Path, port: int, native: bool, wait: bool) -> float:
    os.environ["BROKE_NATIVE"] = "1" if native else "0"
    t0 = time.perf_counter()
    must(broke(home, "start", "--port", str(port), *(["--wait"] if wait else [])), "broke start")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed sequential requests per path (300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed sequential requests per path first (30)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--concurrent-requests", type=int, default=None,
                        help="timed concurrent requests per path (default: 2 x --requests)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="blocks the concurrent requests of each path are split into (4)")
    parser.add_argument("--stream-requests", type=int, default=100, help="timed streamed requests per path (100)")
    parser.add_argument("--fake-in-process", action="store_true",
                        help="run the fake provider in this process (it then shares a GIL with the load generator)")
    parser.add_argument("--keep-home", action="store_true", help="leave the temporary BROKE_HOMEs (logs) behind")
    args = parser.parse_args()
    if args.concurrent_requests is None:
        args.concurrent_requests = 2 * args.requests
    if min(args.requests, args.concurrency, args.concurrent_requests, args.rounds, args.stream_requests) < 1 \
            or args.warmup < 0:
        parser.error("counts must be positive")
    if not have_broke():
        return 1
    os.environ.pop("FAKE_API_KEY", None)  # the key comes from $BROKE_HOME/.env only

    homes: list[Path] = []
    errors: list[str] = []
    try:
        with fake_provider(not args.fake_in_process) as fake_url:
            where = "this process" if args.fake_in_process else "its own process"
            print(f"fake provider at {fake_url} ({where})")
            native_home, litellm_home = setup_home(fake_url), setup_home(fake_url)
            homes += [native_home, litellm_home]
            native_port, litellm_port = free_port(), free_port()
            print("starting the native gateway and the all-through-LiteLLM gateway ...", flush=True)
            setup = {"start_native_s": timed_start(native_home, native_port, True, False)}
            setup["start_litellm_s"] = timed_start(litellm_home, litellm_port, False, True)
            must(broke(native_home, "start", "--wait"), "broke start --wait")  # its LiteLLM too, before timing
            native, _ = gateway_record(native_home)
            through, master = gateway_record(litellm_home)
            setup["front_mb"], setup["litellm_mb"] = rss_mb(native["front"]["pid"]), rss_mb(through["litellm"]["pid"])
            deployment = f"{BACKEND}@FAKE_API_KEY"
            if deployment not in through["deployments"]:
                raise RuntimeError(f"deployment {deployment} not in the gateway record: {through['deployments']}")

            def token(home: Path) -> str:
                return json.loads((home / "run" / "tokens.json").read_text())["client"]

            targets = [
                Target("a", "(a) direct to the fake provider", f"{fake_url}/chat/completions", "bench", FAKE_KEY),
                Target("b", "(b) LiteLLM alone",
                       f"http://127.0.0.1:{through['litellm']['port']}/v1/chat/completions", deployment, master),
                Target("c", "(c) broke native", f"http://127.0.0.1:{native_port}/v1/chat/completions",
                       SLOT, token(native_home), check_header=("x-broke-via", "native")),
                Target("d", "(d) broke through LiteLLM", f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
                       SLOT, token(litellm_home), check_header=("x-broke-via", "litellm")),
            ]
            meter = CpuMeter({"front": native["front"]["pid"], "front_d": through["front"]["pid"],
                              "litellm": through["litellm"]["pid"]})
            results = measure(targets, args, meter)
            errors += results.errors
            print(f"streaming: {args.stream_requests} timed requests per path ...", flush=True)
            ttfb = first_byte([t for t in targets if t.key != "b"], args.stream_requests, errors)
            if all(results.seq[t.key] and results.conc[t.key] for t in targets):
                report(args, targets, results, ttfb, setup)
            else:
                print("no timings for some path; see the errors below", file=sys.stderr)
    except Exception as exc:  # setup failed: say why, with the gateway logs
        print(f"error: {exc}", file=sys.stderr)
        for home in homes:
            print_log_tails(home / "run" / name for name in ("litellm.log", "gateway.log"))
        errors.append(str(exc))
    finally:
        for home in homes:
            clean_up(home, True, args.keep_home)
    return exit_status(errors)


if __name__ == "__main__":
    sys.exit(main())
