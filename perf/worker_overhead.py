"""Worker overhead: time-to-first-token and decode speed of a local MLX model, direct vs through broke.

Run with the venv's interpreter:

    .venv/bin/python perf/worker_overhead.py [--runs N] [--warmup W]

One tiny model (`broke local make-tiny`, rigged to always answer the same 66-word sentence, about
one token per word) is served by its worker (`mlx_lm.server`, started by `broke start`) and asked the
same streaming chat completion along three paths:

  (1) direct   the worker's own mlx_lm.server, model "default_model";
  (2) gateway  broke's front port with the client token (`broke connect --json`), model "sonnet"
               (swapped to mlx/tiny): front proxy -> LiteLLM -> worker;
  (3) litellm  broke's internal LiteLLM port with the internal master key, model "mlx/tiny":
               LiteLLM -> worker, without the front proxy. Only for the breakdown of (2) - (1) into
               LiteLLM's hop and broke's proxy hop; --no-litellm leaves it out.

Setup: a temporary BROKE_HOME, `broke local make-tiny <tmp>/tiny --answer ... --add tiny`,
`broke swap sonnet mlx/tiny`, `broke start --port <free port>` (which starts the worker too);
`broke stop` always runs at the end.

TTFT: from just before the request is sent to the arrival of the first SSE `data:` line whose
delta carries non-empty content (`: keepalive` comments and a role-only chunk do not count).
Decode tokens/s: content chunks after the first / time from the first to the last content chunk.
Every answer is checked: HTTP 200, an event stream, the text is exactly the rigged sentence,
`data: [DONE]` at the end, and for (2) `x-broke-backend: mlx/tiny`.

The paths take turns request by request, in rotating order (W untimed rounds first), so machine
noise hits them alike; each request waits --pause seconds first, so that what the previous one
left running (LiteLLM's logging after [DONE]) does not land in its TTFT. One client connection
per path (mlx_lm.server speaks HTTP/1.0, so the direct path connects afresh every time). Target: the
gateway adds <= 5 % to the median (p50) TTFT of the direct path.
Exit status: 0 when every request succeeded (PASS or FAIL alike: this is a benchmark that reports),
1 when a request failed or the gateway could not be set up.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

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
    start_gateway,
)

TTFT_TARGET_PCT = 5.0
SLOT = "sonnet"
MODEL = "tiny"
BACKEND = f"mlx/{MODEL}"
#: 66 distinct words, 67 answer tokens (one per word, "'s" apart): the tiny model streams it back
#: one token, i.e. one SSE chunk, at a time.
ANSWER = (
    "Amber rivers carry quiet lanterns past sleeping orchards while copper foxes trace silver "
    "circles beneath tall northern pines; meanwhile patient engineers measure gentle currents, "
    "record every humming turbine, sketch bright diagrams, coach curious students, and whisper "
    "careful promises about tomorrow's cleaner harbors, warmer kitchens, faster trains, kinder "
    "cities, greener valleys, stronger bridges, wiser machines, open libraries, shared gardens, "
    "calm oceans, honest ledgers, plus lasting friendships everywhere."
)
PROMPT = [{"role": "user", "content": "Describe a hopeful morning in one long sentence."}]


@dataclass
class Target:
    """One way to reach the worker: URL, model name, auth, and a header a good answer carries."""

    key: str
    label: str
    url: str
    model: str
    token: str | None
    check_header: tuple[str, str] | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.body = json.dumps({"model": self.model, "messages": PROMPT, "stream": True}).encode()
        self.headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if self.token:
            self.headers["authorization"] = f"Bearer {self.token}"


@dataclass
class Sample:
    ttft_ms: float
    tokens_per_s: float
    chunks: int  # content chunks
    total_ms: float


def stream_once(client: httpx.Client, target: Target) -> Sample:
    """One streaming request, timed; raises RequestFailed unless the answer is the rigged sentence."""
    text: list[str] = []
    first = last = None
    chunks = 0
    done = False
    started = time.perf_counter()
    with client.stream("POST", target.url, content=target.body, headers=target.headers) as response:
        if response.status_code != 200:
            response.read()
            raise RequestFailed(f"HTTP {response.status_code}: {response.text[:300]}")
        if "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
            raise RequestFailed(f"not an event stream ({response.headers.get('content-type')}): "
                                f"{response.text[:300]}")
        if target.check_header:
            name, expected = target.check_header
            if response.headers.get(name) != expected:
                raise RequestFailed(f"{name} = {response.headers.get(name)!r}, expected {expected!r}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators and `: keepalive` comments
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                raise RequestFailed(f"not JSON: {data[:200]}") from None
            if "error" in event:
                raise RequestFailed(f"error in the stream: {data[:300]}")
            for choice in event.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    last = now
                    chunks += 1
                    text.append(content)
    finished = time.perf_counter()
    answer = "".join(text)
    if not done:
        raise RequestFailed("the stream ended without data: [DONE]")
    if answer != ANSWER:
        raise RequestFailed(f"unexpected answer {answer[:120]!r}")
    assert first is not None and last is not None
    rate = (chunks - 1) / (last - first) if chunks > 1 and last > first else float("nan")
    return Sample((first - started) * 1000.0, rate, chunks, (finished - started) * 1000.0)


def measure(targets: list[Target], warmup: int, runs: int, pause: float, meter: CpuMeter,
            errors: list[str]) -> tuple[dict[str, list[Sample]], dict[str, float], dict[str, list[float]]]:
    """Samples per target; the targets take turns request by request, in rotating order.

    Also returns the CPU seconds each process used over the timed part, and the per-round
    TTFT differences (each path minus direct, same round).
    """
    samples: dict[str, list[Sample]] = {t.key: [] for t in targets}
    paired: dict[str, list[float]] = {t.key: [] for t in targets[1:]}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = {t.key: httpx.Client(limits=limits, timeout=60.0) for t in targets}

    def round_(i: int, record: bool) -> None:
        shift = i % len(targets)
        got: dict[str, float] = {}
        for target in targets[shift:] + targets[:shift]:
            time.sleep(pause)  # let the previous request's after-work finish (LiteLLM logs after [DONE])
            try:
                sample = stream_once(clients[target.key], target)
            except (httpx.HTTPError, RequestFailed) as exc:
                errors.append(f"{target.label}: {exc!r}"[:400])
                continue
            if record:
                samples[target.key].append(sample)
                got[target.key] = sample.ttft_ms
        base = targets[0].key
        for key in paired:
            if base in got and key in got:
                paired[key].append(got[key] - got[base])

    try:
        for i in range(warmup):
            round_(i, False)
        before = meter.snapshot()
        for i in range(runs):
            round_(i, True)
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{runs} rounds", flush=True)
        cpu = CpuMeter.delta(before, meter.snapshot())
    finally:
        for client in clients.values():
            client.close()
    return samples, cpu, paired


# ---- the gateway ----------------------------------------------------------------------------------

def worker_server_pid(supervisor_pid: int) -> int:
    """The mlx_lm.server process under the worker's supervisor."""
    for child in psutil.Process(supervisor_pid).children(recursive=True):
        with_cmd = " ".join(child.cmdline())
        if "mlx_lm.server" in with_cmd:
            return child.pid
    raise RuntimeError(f"no mlx_lm.server under the worker's supervisor (pid {supervisor_pid})")


# ---- report ---------------------------------------------------------------------------------------

def report(args: argparse.Namespace, targets: list[Target], samples: dict[str, list[Sample]],
           cpu: dict[str, float], paired: dict[str, list[float]]) -> None:
    ttft = {k: [s.ttft_ms for s in v] for k, v in samples.items()}
    print()
    print(f"{args.runs} timed requests per path after {args.warmup} warm-up round(s), paths interleaved "
          "in rotating order; streaming chat completions, answer checked every time")
    print()
    header = (f"{'path':<40} {'TTFT p50':>9} {'TTFT p90':>9} {'tok/s p50':>10} {'chunks':>6} "
              f"{'total p50':>10}")
    print(header + "\n" + " " * 40 + f" {'ms':>9} {'ms':>9} {'':>10} {'':>6} {'ms':>10}")
    print("─" * len(header))
    for t in targets:
        s = samples[t.key]
        chunks = sorted({x.chunks for x in s})
        print(f"{t.label:<40} {percentile(ttft[t.key], 50):>9.2f} {percentile(ttft[t.key], 90):>9.2f} "
              f"{statistics.median(x.tokens_per_s for x in s):>10.0f} "
              f"{'/'.join(map(str, chunks)):>6} {percentile([x.total_ms for x in s], 50):>10.2f}")

    n = {k: len(v) for k, v in samples.items()}
    per_request = []
    for name, seconds in cpu.items():
        # the worker serves every path; LiteLLM serves gateway and litellm; the front only the gateway
        served = (sum(n.values()) if name == "worker" else
                  n["gateway"] + n.get("litellm", 0) if name == "litellm" else n["gateway"])
        per_request.append(f"{name} {seconds / served * 1000:.1f}" if served else f"{name} -")
    print()
    print("CPU per request it served (ms, user+system): " + ", ".join(per_request))

    direct_p50 = percentile(ttft["direct"], 50)
    added = percentile(ttft["gateway"], 50) - direct_p50
    pct = added / direct_p50 * 100.0
    print()
    print("derived:")
    print(f"  gateway's added TTFT at p50: {added:+.2f} ms = {pct:+.1f} % of direct "
          f"({direct_p50:.2f} ms)   [target: gateway adds <= {TTFT_TARGET_PCT:.0f} % to time-to-first-token "
          f"at p50] {'PASS' if pct <= TTFT_TARGET_PCT else 'FAIL'}")
    print(f"  gateway's added TTFT at p90: {percentile(ttft['gateway'], 90) - percentile(ttft['direct'], 90):+.2f}"
          " ms (reported, no target)")
    print(f"  median of per-round differences (gateway - direct): {statistics.median(paired['gateway']):+.2f} ms")
    rate = {k: statistics.median(x.tokens_per_s for x in v) for k, v in samples.items()}
    print(f"  decode tokens/s, gateway / direct: {rate['gateway'] / rate['direct'] * 100:.1f} %")
    if "litellm" in samples:
        lite = percentile(ttft["litellm"], 50)
        print("  breakdown of the added TTFT at p50:")
        print(f"    LiteLLM's hop (litellm - direct): {lite - direct_p50:+.2f} ms "
              f"({(lite - direct_p50) / direct_p50 * 100:+.1f} %); per-round median "
              f"{statistics.median(paired['litellm']):+.2f} ms")
        front = percentile(ttft["gateway"], 50) - lite
        per_round = statistics.median(g - lt for g, lt in zip(paired['gateway'], paired['litellm'], strict=False))
        print(f"    broke's proxy hop (gateway - litellm): {front:+.2f} ms "
              f"({front / direct_p50 * 100:+.1f} % of direct); per-round median {per_round:+.2f} ms")
        print(f"    decode tokens/s, litellm / direct: {rate['litellm'] / rate['direct'] * 100:.1f} %")
    print()
    print_machine_and_command(
        ", mlx on CPU. The client (this process), LiteLLM, the front proxy and the worker (mlx_lm.server) "
        "all share these cores, so absolute numbers are noisy: compare the paths with each other, and "
        "rerun to see the spread.")


# ---- main -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed streaming requests per path (40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first (5)")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="idle seconds before each request, so that work left over from the previous "
                             "one does not land in the next one's TTFT (0.2)")
    parser.add_argument("--no-litellm", action="store_true",
                        help="leave out the internal LiteLLM path (no breakdown of the gateway's hops)")
    parser.add_argument("--keep-home", action="store_true", help="leave the temporary BROKE_HOME (logs) behind")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be positive and --warmup not negative")
    if not have_broke():
        return 1

    home = Path(tempfile.mkdtemp(prefix="broke-bench-worker-"))
    started_gateway = False
    errors: list[str] = []
    try:
        print(f"BROKE_HOME={home}")
        must(broke(home, "local", "make-tiny", str(home / "tiny"), "--answer", ANSWER, "--add", MODEL),
             "broke local make-tiny")
        must(broke(home, "swap", SLOT, BACKEND), "broke swap")
        port = free_port()
        started_gateway = True
        start_gateway(home, port, what="the gateway and the worker")

        workers = json.loads(must(broke(home, "worker", "list", "--json"), "broke worker list"))
        worker = next((w for w in workers if w["backend"] == BACKEND), None)
        if worker is None or worker["state"] != "ready":
            raise RuntimeError(f"the worker of {BACKEND} is not ready: {workers}")
        connect = json.loads(must(broke(home, "connect", "--json"), "broke connect"))
        record, master = gateway_record(home)
        if BACKEND not in record["deployments"]:
            raise RuntimeError(f"deployment {BACKEND} not in the gateway record: {record['deployments']}")
        print(f"worker (mlx_lm.server) on 127.0.0.1:{worker['port']}, front proxy on {connect['base_url']}, "
              f"LiteLLM on 127.0.0.1:{record['litellm']['port']}", flush=True)

        targets = [
            Target("direct", "(1) direct: worker's mlx_lm.server",
                   f"http://127.0.0.1:{worker['port']}/v1/chat/completions", "default_model", None),
            Target("gateway", "(2) gateway: front proxy + LiteLLM",
                   f"{connect['base_url']}/v1/chat/completions", SLOT, connect["token"],
                   check_header=("x-broke-backend", BACKEND)),
        ]
        if not args.no_litellm:
            targets.append(Target("litellm", "(3) LiteLLM alone (internal port)",
                                  f"http://127.0.0.1:{record['litellm']['port']}/v1/chat/completions",
                                  BACKEND, master))
        meter = CpuMeter({"front": record["front"]["pid"], "litellm": record["litellm"]["pid"],
                          "worker": worker_server_pid(worker["pid"])})
        print(f"{args.warmup} warm-up round(s), then {args.runs} timed rounds of {len(targets)} requests ...",
              flush=True)
        samples, cpu, paired = measure(targets, args.warmup, args.runs, args.pause, meter, errors)
        if all(samples[t.key] for t in targets):
            report(args, targets, samples, cpu, paired)
        else:
            print("no timings for some path; see the errors below", file=sys.stderr)
    except Exception as exc:  # setup failed: say why, with the logs
        print(f"error: {exc}", file=sys.stderr)
        print_log_tails(sorted((home / "run").glob("*.log")))
        errors.append(str(exc))
    finally:
        clean_up(home, started_gateway, args.keep_home)
    return exit_status(errors)


if __name__ == "__main__":
    sys.exit(main())
