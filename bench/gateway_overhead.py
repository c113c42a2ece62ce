"""Gateway overhead: what broke's front proxy adds on top of LiteLLM, for small chat completions.

Run with the venv's interpreter:

    .venv/bin/python bench/gateway_overhead.py [--requests N] [--concurrency C]

Three paths serve the same tiny non-streaming chat completion:

  (a) direct   the fake OpenAI-compatible provider (tests/fake_provider.py, in this process,
               or in a child process with --fake-process);
  (b) litellm  broke's own LiteLLM, at its internal port with the internal master key;
  (c) broke    the front proxy (auth, slot resolution, forwarding) in front of that same LiteLLM.

Setup: a temporary BROKE_HOME, a custom backend fake/bench pointing at the fake, `sonnet` swapped
to it, its key in $BROKE_HOME/.env, and `broke start --port <free port>`; `broke stop` always runs
at the end. (b) and (c) therefore hit one and the same LiteLLM process.

Sequential: N timed requests per path (after a warm-up), one at a time, the three paths
interleaved request by request in rotating order, so that machine noise hits them alike.
Concurrent: after an untimed burst per path, C clients (asyncio + httpx.AsyncClient, C keep-alive
connections) send M requests per path, in --rounds blocks whose path order alternates;
throughput = requests / summed wall time.
The CPU time the front proxy and LiteLLM processes use per request is reported as well: on a
small shared machine it is a steadier measure of the proxy's cost than wall-clock differences.

Targets: broke's added median latency (c - b, sequential) <= 1 ms, and throughput (c / b,
concurrent) >= 90 %. Exit status: 0 when every request succeeded (PASS or FAIL alike: this is a
benchmark that reports), 1 when a request failed or the gateway could not be set up.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import (CpuMeter, RequestFailed, broke, clean_up, exit_status, free_port, gateway_record, have_broke,
                     must, percentile, print_log_tails, print_machine_and_command, start_gateway)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_provider import FakeProvider  # noqa: E402

MEDIAN_TARGET_MS = 1.0
THROUGHPUT_TARGET = 0.90
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

#: The fake provider in a child process (--fake-process): prints its base URL, serves until stdin closes.
_FAKE_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); from fake_provider import FakeProvider\n"
    "with FakeProvider() as fake:\n"
    "    print(fake.base_url, flush=True); sys.stdin.read()\n"
)


@contextlib.contextmanager
def fake_provider(separate: bool) -> Iterator[str]:
    """The fake's base URL: in this process (default), or in a child process of its own."""
    if not separate:
        with FakeProvider() as fake:
            yield fake.base_url
        return
    child = subprocess.Popen([sys.executable, "-c", _FAKE_CHILD, str(ROOT / "tests")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        base_url = (child.stdout.readline() if child.stdout else "").strip()
        if not base_url.startswith("http://"):
            raise RuntimeError("the fake provider's process did not start")
        yield base_url
    finally:
        if child.stdin:
            child.stdin.close()  # the child stops its server and exits
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()  # our own child, by its handle
            child.wait()


# ---- report ---------------------------------------------------------------------------------------

def report(args: argparse.Namespace, targets: list[Target], res: Results) -> None:
    rate = {k: sum(n for n, _ in r) / sum(w for _, w in r) for k, r in res.rounds.items()}
    print()
    print(f"sequential: {args.requests} requests per path after {args.warmup} warm-up, paths interleaved")
    timed = sum(n for n, _ in res.rounds["c"])
    print(f"concurrent: {args.concurrency} clients, {timed} timed requests per path in {args.rounds} "
          "round(s), alternating path order, after an untimed burst per path")
    print()
    header = (f"{'path':<34} {'seq p50 ms':>10} {'seq p99 ms':>10} │ {'req/s':>7} "
              f"{'conc p50 ms':>11} {'conc p99 ms':>11}")
    print(header)
    print("─" * len(header))
    for t in targets:
        s, c = res.seq[t.key], res.conc[t.key]
        print(f"{t.label:<34} {percentile(s, 50):>10.2f} {percentile(s, 99):>10.2f} │ "
              f"{rate[t.key]:>7.1f} {percentile(c, 50):>11.2f} {percentile(c, 99):>11.2f}")
    print()
    print("concurrent throughput per round (req/s): " + "; ".join(
        f"{t.key} " + ", ".join(f"{n / w:.0f}" for n, w in res.rounds[t.key]) for t in targets))

    n_seq = len(res.seq["c"])
    front_seq = res.seq_cpu["front"] / n_seq * 1000 if n_seq else float("nan")
    # LiteLLM serves b and c during the sequential part.
    lite_seq = res.seq_cpu["litellm"] / (n_seq + len(res.seq["b"])) * 1000
    n_b, n_c = sum(n for n, _ in res.rounds["b"]), sum(n for n, _ in res.rounds["c"])
    print("CPU per request (ms, user+system): "
          f"sequential: front proxy {front_seq:.2f}, LiteLLM {lite_seq:.2f}; "
          f"concurrent: front proxy {res.conc_cpu['c']['front'] / n_c * 1000:.2f}, "
          f"LiteLLM {res.conc_cpu['b']['litellm'] / n_b * 1000:.2f} (b) / "
          f"{res.conc_cpu['c']['litellm'] / n_c * 1000:.2f} (c)")

    b, c = res.seq["b"], res.seq["c"]
    added_p50 = percentile(c, 50) - percentile(b, 50)
    added_p99 = percentile(c, 99) - percentile(b, 99)
    conc_added_p50 = percentile(res.conc["c"], 50) - percentile(res.conc["b"], 50)
    ratio = rate["c"] / rate["b"]
    print()
    print("derived:")
    litellm_p50 = percentile(b, 50) - percentile(res.seq["a"], 50)
    print(f"  LiteLLM's own added latency (b - a), sequential p50: {litellm_p50:+.2f} ms")
    print(f"  broke's added latency (c - b), sequential p50: {added_p50:+.2f} ms   "
          f"[target <= {MEDIAN_TARGET_MS:.1f} ms] {'PASS' if added_p50 <= MEDIAN_TARGET_MS else 'FAIL'}")
    print(f"  broke's added latency (c - b), sequential p99: {added_p99:+.2f} ms   (reported, no target)")
    print(f"  broke's added latency (c - b), concurrent p50: {conc_added_p50:+.2f} ms   (reported, no target)")
    print(f"  throughput c / b under {args.concurrency} clients: {ratio * 100:.1f} %   "
          f"[target >= {THROUGHPUT_TARGET * 100:.0f} %] {'PASS' if ratio >= THROUGHPUT_TARGET else 'FAIL'}")
    print()
    print_machine_and_command(
        ". The load generator, the fake provider "
        f"({'its own process' if args.fake_process else 'in the load generator: one GIL'}), LiteLLM "
        "and the front proxy all share these cores, so absolute numbers are noisy: compare the "
        "paths with each other, and rerun to see the spread.")


# ---- main -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed sequential requests per path (300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed sequential requests per path first (30)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--concurrent-requests", type=int, default=None,
                        help="timed concurrent requests per path (default: 2 x --requests)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="blocks the concurrent requests of each path are split into (4)")
    parser.add_argument("--fake-process", action="store_true",
                        help="run the fake provider in a child process instead of this one (no GIL shared "
                             "with the load generator)")
    parser.add_argument("--keep-home", action="store_true", help="leave the temporary BROKE_HOME (logs) behind")
    args = parser.parse_args()
    if args.concurrent_requests is None:
        args.concurrent_requests = 2 * args.requests
    if min(args.requests, args.concurrency, args.concurrent_requests, args.rounds) < 1 or args.warmup < 0:
        parser.error("counts must be positive")
    if not have_broke():
        return 1
    os.environ.pop("FAKE_API_KEY", None)  # the key comes from $BROKE_HOME/.env only

    home = Path(tempfile.mkdtemp(prefix="broke-bench-gw-"))
    started_gateway = False
    errors: list[str] = []
    try:
        with fake_provider(args.fake_process) as fake_url:
            where = "its own process" if args.fake_process else "this process"
            print(f"fake provider at {fake_url} ({where}); BROKE_HOME={home}")
            env_file = home / ".env"
            env_file.write_text(f"FAKE_API_KEY={FAKE_KEY}\n")
            env_file.chmod(0o600)
            must(broke(home, "backend", "add", BACKEND, "--provider", "openai-compatible",
                       "--api-base", fake_url, "--model", "bench", "--key-env", "FAKE_API_KEY"),
                 "broke backend add")
            must(broke(home, "swap", SLOT, BACKEND), "broke swap")
            port = free_port()
            started_gateway = True
            start_gateway(home, port)

            record, master = gateway_record(home)
            client_token = json.loads((home / "run" / "tokens.json").read_text())["client"]
            deployment = f"{BACKEND}@FAKE_API_KEY"
            if deployment not in record["deployments"]:
                raise RuntimeError(f"deployment {deployment} not in the gateway record: {record['deployments']}")
            targets = [
                Target("a", "(a) direct to the fake provider", f"{fake_url}/chat/completions",
                       "bench", FAKE_KEY),
                Target("b", "(b) LiteLLM alone",
                       f"http://127.0.0.1:{record['litellm']['port']}/v1/chat/completions", deployment, master),
                Target("c", "(c) broke (front proxy + LiteLLM)", f"http://127.0.0.1:{port}/v1/chat/completions",
                       SLOT, client_token, check_header=("x-broke-backend", BACKEND)),
            ]
            meter = CpuMeter({"front": record["front"]["pid"], "litellm": record["litellm"]["pid"]})
            results = measure(targets, args, meter)
            errors += results.errors
            if all(results.seq[t.key] and results.conc[t.key] for t in targets):
                report(args, targets, results)
            else:
                print("no timings for some path; see the errors below", file=sys.stderr)
    except Exception as exc:  # setup failed: say why, with the gateway logs
        print(f"error: {exc}", file=sys.stderr)
        print_log_tails(home / "run" / name for name in ("litellm.log", "gateway.log"))
        errors.append(str(exc))
    finally:
        clean_up(home, started_gateway, args.keep_home)
    return exit_status(errors)


if __name__ == "__main__":
    sys.exit(main())
