"""Gateway overhead: what broke adds to a small chat completion, forwarded natively, translated by broke
itself (Anthropic Messages and Responses onto chat completions), or through LiteLLM.

Run with the venv's interpreter:

    .venv/bin/python perf/gateway_overhead.py [--requests N] [--concurrency C]

Seven paths serve the same tiny answer, in one run:

  (a) direct               the fast fake upstream (perf/fast_fake.py: asyncio, its own process);
  (b) LiteLLM alone        broke's own LiteLLM, at its internal port with the internal master key;
  (c) broke native         chat completions forwarded by the front proxy itself;
  (d) broke+LiteLLM        a second gateway started with BROKE_NATIVE=0: chat completions through its LiteLLM;
  (e) broke messages→chat  Anthropic Messages (Claude Code) translated by the front proxy onto chat completions;
  (f) broke responses→chat Responses (Codex) translated by the front proxy onto chat completions;
  (g) messages via LiteLLM Anthropic Messages through gateway (d)'s LiteLLM (the path before issue 24).

Setup: two temporary BROKE_HOMEs with a custom OpenAI-compatible backend fake/bench pointing at the
fake, every slot swapped to it, its key in .env, `broke start`; `broke stop` always
runs at the end. (b) is the LiteLLM of gateway (d).

Sequential: N timed requests per path (after a warm-up), one at a time, the paths interleaved
request by request in rotating order, so that machine noise hits them alike; the paths through
LiteLLM take turns among themselves afterwards (LiteLLM's work after each answer would slow the
request that follows it). Streaming: time to
the first streamed byte, sequential, for every path but (b). Concurrent: after an untimed burst per
path, C clients (asyncio + aiohttp) send M requests per path, in --rounds blocks whose
path order alternates; throughput = requests / summed wall time. Also reported: the fake's own
throughput, how long `broke start` takes until the native gateway has answered a /v1/messages
request, and the resident memory of the native gateway's process tree.

Targets (issue 24): translated paths (e, f) add <= 2 ms p50 over direct (sequential); >= 690 req/s
under 16 clients; first streamed byte <= direct + 2.5 ms; `broke start` to a served /v1/messages
<= 2 s; native gateway process tree <= 100 MB RSS. Exit status: 0 when every request succeeded
(PASS or FAIL alike: this is a benchmark that reports), 1 when a request failed or a gateway could
not be set up.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import psutil

from broke.catalog import load_catalog
from fast_fake import running as fast_fake
from harness import (
    CpuMeter,
    RequestFailed,
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
    rss_mb,
)

ADDED_TARGET_MS = 2.0  # translated (e, f) over direct, sequential p50
THROUGHPUT_TARGET = 690.0  # req/s under 16 clients, translated paths
TTFB_ADDED_TARGET_MS = 2.5
START_TARGET_S = 2.0  # `broke start` to a served /v1/messages
RSS_TARGET_MB = 100.0
FAKE_KEY = "bench-key"  # a placeholder for the fake provider, not a real key
BACKEND = "fake/bench"
SLOTS = tuple(load_catalog().slots)  # every slot (Claude, Codex lanes, Gemini, auto) on the fake
SLOT = "sonnet"
PROMPT = [{"role": "user", "content": "ping"}]
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}


@dataclass
class Target:
    """One way to reach a chat completion: URL, model name, auth, and what a good answer shows."""

    key: str
    label: str
    url: str
    model: str
    token: str
    check_header: tuple[str, str] | None = None
    api: str = "chat"  # the client API asked: chat, messages or responses
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api == "responses":
            body: dict[str, object] = {"model": self.model, "input": "ping", "max_output_tokens": 8}
        else:
            body = {"model": self.model, "messages": PROMPT, "max_tokens": 8}
        self.body = json.dumps(body).encode()
        self.headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json",
                        "anthropic-version": "2023-06-01"}


def text_of(api: str, answer: dict) -> str:
    """The answer's text, read the way its client API's clients read it."""
    if api == "messages":
        return str(answer["content"][0]["text"])
    if api == "responses":
        return str([i for i in answer["output"] if i["type"] == "message"][0]["content"][0]["text"])
    return str(answer["choices"][0]["message"]["content"])


def check(target: Target, status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise RequestFailed unless this is a real answer from the fake, in the client API's shape."""
    if status != 200:
        raise RequestFailed(f"HTTP {status}: {body[:300]!r}")
    try:
        content = text_of(target.api, json.loads(body))
    except (ValueError, KeyError, IndexError, TypeError):
        raise RequestFailed(f"not a {target.api} answer: {body[:300]!r}") from None
    if not str(content).startswith("fake:"):
        raise RequestFailed(f"unexpected answer {content!r}")
    if target.check_header:
        name, expected = target.check_header
        if headers.get(name) != expected:
            raise RequestFailed(f"{name} = {headers.get(name)!r}, expected {expected!r}")


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
                check(target, response.status_code, response.headers, response.content)
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
    """Send `count` requests with `concurrency` workers; returns (wall seconds, CPU per process).
    aiohttp, not httpx: the load generator costs about half the CPU per request, so that it is less
    often the ceiling on two cores."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60.0)) as client:
        async def one(record: bool) -> None:
            started = time.perf_counter()
            try:
                async with client.post(target.url, data=target.body, headers=target.headers) as response:
                    body = await response.read()
                elapsed = (time.perf_counter() - started) * 1000.0
                check(target, response.status, response.headers, body)
            except (aiohttp.ClientError, TimeoutError, RequestFailed) as exc:
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
    # LiteLLM keeps working for a while after each answer (its callbacks and logging), which slows
    # whichever request comes next: the LiteLLM paths take turns among themselves, after the others.
    quiet = [t for t in targets if "LiteLLM" not in t.label]
    seq, seq_cpu = sequential(quiet, args.warmup, args.requests, meter, errors)
    loud, loud_cpu = sequential([t for t in targets if t not in quiet], args.warmup, args.requests, meter, errors)
    seq.update(loud)
    seq_cpu = {name: seq_cpu.get(name, 0.0) + loud_cpu.get(name, 0.0) for name in {*seq_cpu, *loud_cpu}}

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
    n = {k: sum(count for count, _ in r) for k, r in res.rounds.items()}
    print("front proxy CPU per request under load (ms, user+system): " + "; ".join(
        f"{k} {res.conc_cpu[k]['front'] / n[k] * 1000:.2f}" for k in "cef") +
        f"; d {res.conc_cpu['d']['front_d'] / n['d'] * 1000:.2f} + LiteLLM "
        f"{res.conc_cpu['d']['litellm'] / n['d'] * 1000:.2f}")

    def p50(key: str) -> float:
        return percentile(res.seq[key], 50)

    print()
    print("derived:")
    print(f"  the fake upstream alone (a): {rate['a']:.0f} req/s under {args.concurrency} clients "
          "(what the load generator and the fake reach together: the ceiling of every other path)")
    print(f"  LiteLLM's own added latency (b - a), sequential p50: {p50('b') - p50('a'):+.2f} ms")
    print(f"  broke native (c - a): {p50('c') - p50('a'):+.2f} ms; broke through LiteLLM (d - a): "
          f"{p50('d') - p50('a'):+.2f} ms; messages via LiteLLM (g - a): {p50('g') - p50('a'):+.2f} ms")
    for key in "ef":
        label = next(t.label for t in targets if t.key == key)
        added = p50(key) - p50("a")
        ttfb_added = percentile(ttfb[key], 50) - percentile(ttfb["a"], 50)
        print(f"  {label}: added p50 {added:+.2f} ms [<= {ADDED_TARGET_MS:.1f}] {verdict(added <= ADDED_TARGET_MS)}; "
              f"{rate[key]:.0f} req/s [>= {THROUGHPUT_TARGET:.0f}] {verdict(rate[key] >= THROUGHPUT_TARGET)}; "
              f"first streamed byte {ttfb_added:+.2f} ms over direct [<= {TTFB_ADDED_TARGET_MS:.1f}] "
              f"{verdict(ttfb_added <= TTFB_ADDED_TARGET_MS)}")
    started = setup["start_native_s"]
    print(f"  `broke start` to a served /v1/messages (Claude slots on an OpenAI-compatible backend): "
          f"{started:.2f} s [<= {START_TARGET_S:.1f}] {verdict(started <= START_TARGET_S)}"
          f"; the all-through-LiteLLM gateway with --wait: {setup['start_litellm_s']:.2f} s")
    print(f"  resident memory: native gateway process tree {setup['tree_mb']:.0f} MB "
          f"({setup['tree_n']:.0f} process(es), no LiteLLM) [<= {RSS_TARGET_MB:.0f}] "
          f"{verdict(setup['tree_mb'] <= RSS_TARGET_MB)}; LiteLLM alone {setup['litellm_mb']:.0f} MB")
    print()
    print_machine_and_command(
        ". The load generator, the fake upstream (its own process), LiteLLM and the front proxies all "
        "share these cores, so absolute numbers are noisy: compare the paths with each other, and rerun "
        "to see the spread.")


# ---- main -----------------------------------------------------------------------------------------

def setup_home(fake_url: str) -> Path:
    """A temporary BROKE_HOME whose Claude and Codex slots are all the fake, its key in .env."""
    home = Path(tempfile.mkdtemp(prefix="broke-bench-gw-"))
    env_file = home / ".env"
    env_file.write_text(f"FAKE_API_KEY={FAKE_KEY}\n")
    env_file.chmod(0o600)
    must(broke(home, "backend", "add", BACKEND, "--provider", "openai-compatible",
               "--api-base", fake_url, "--model", "bench", "--key-env", "FAKE_API_KEY"), "broke backend add")
    must(broke(home, "swap", *[f"{slot}={BACKEND}" for slot in SLOTS]), "broke swap")
    for slot in SLOTS:
        must(broke(home, "fallback", slot, "--clear"), "broke fallback --clear")
    return home


def timed_start(home: Path, port: int, native: bool, wait: bool) -> float:
    os.environ["BROKE_NATIVE"] = "1" if native else "0"
    t0 = time.perf_counter()
    must(broke(home, "start", "--port", str(port), *(["--wait"] if wait else [])), "broke start")
    return time.perf_counter() - t0


def start_to_messages(home: Path, port: int) -> float:
    """Seconds from `broke start` to the first /v1/messages answer (asked as soon as start returns)."""
    t0 = time.perf_counter()
    timed_start(home, port, True, False)
    token = json.loads((home / "run" / "tokens.json").read_text())["client"]
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/messages", timeout=30,
                        headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
                        json={"model": SLOT, "max_tokens": 8, "messages": PROMPT})
    if answer.status_code != 200:
        raise RuntimeError(f"the first /v1/messages failed: HTTP {answer.status_code} {answer.text[:200]}")
    return time.perf_counter() - t0


def tree_rss(pid: int) -> tuple[float, int]:
    """Resident MiB of a process and all its descendants, and how many processes that is."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(rss_mb(p.pid) for p in processes), len(processes)


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
        with fast_fake() as fake_url:
            print(f"fake upstream at {fake_url} (perf/fast_fake.py, its own process)")
            native_home, litellm_home = setup_home(fake_url), setup_home(fake_url)
            homes += [native_home, litellm_home]
            native_port, litellm_port = free_port(), free_port()
            print("starting the native gateway and the all-through-LiteLLM gateway ...", flush=True)
            setup = {"start_native_s": start_to_messages(native_home, native_port)}
            setup["start_litellm_s"] = timed_start(litellm_home, litellm_port, False, True)
            native, _ = gateway_record(native_home)
            through, master = gateway_record(litellm_home)
            if native["litellm"]["pid"]:
                raise RuntimeError("the native gateway started a LiteLLM: some slot still needs one")
            setup["tree_mb"], tree_n = tree_rss(native["front"]["pid"])
            setup["tree_n"], setup["litellm_mb"] = float(tree_n), rss_mb(through["litellm"]["pid"])
            deployment = f"{BACKEND}@FAKE_API_KEY"
            if deployment not in through["deployments"]:
                raise RuntimeError(f"deployment {deployment} not in the gateway record: {through['deployments']}")

            def token(home: Path) -> str:
                return json.loads((home / "run" / "tokens.json").read_text())["client"]

            native_url, through_url = f"http://127.0.0.1:{native_port}", f"http://127.0.0.1:{litellm_port}"
            targets = [
                Target("a", "(a) direct to the fake upstream", f"{fake_url}/chat/completions", "bench", FAKE_KEY),
                Target("b", "(b) LiteLLM alone",
                       f"http://127.0.0.1:{through['litellm']['port']}/v1/chat/completions", deployment, master),
                Target("c", "(c) broke native chat", native_url + PATHS["chat"], SLOT, token(native_home),
                       check_header=("x-broke-via", "native")),
                Target("d", "(d) broke chat through LiteLLM", through_url + PATHS["chat"], SLOT, token(litellm_home),
                       check_header=("x-broke-via", "litellm")),
                Target("e", "(e) broke messages→chat", native_url + PATHS["messages"], SLOT, token(native_home),
                       check_header=("x-broke-via", "translated"), api="messages"),
                Target("f", "(f) broke responses→chat", native_url + PATHS["responses"], "gpt-5-codex",
                       token(native_home), check_header=("x-broke-via", "translated"), api="responses"),
                Target("g", "(g) broke messages via LiteLLM", through_url + PATHS["messages"], SLOT,
                       token(litellm_home), check_header=("x-broke-via", "litellm"), api="messages"),
            ]
            meter = CpuMeter({"front": native["front"]["pid"], "front_d": through["front"]["pid"],
                              "litellm": through["litellm"]["pid"]})
            results = measure(targets, args, meter)
            errors += results.errors
            print(f"streaming: {args.stream_requests} timed requests per path ...", flush=True)
            quiet = [t for t in targets if "LiteLLM" not in t.label]  # as in measure()
            ttfb = first_byte(quiet, args.stream_requests, errors)
            ttfb.update(first_byte([t for t in targets if t not in quiet and t.key != "b"], args.stream_requests,
                                   errors))
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
