"""`benchmark-sequential`: measure models one at a time, so they never share memory.

For each local model: start its worker alone, warm it up, run the suite `runs` times, sample the
server's memory, stop the worker, then go on to the next model. Backends reached through the
running gateway are measured the same way (no worker of ours to start, time or weigh).
Ctrl-C stops the current worker and keeps every finished result (the record says it is incomplete).
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broke import baselines
from broke.bench.measure import PromptRun, spread, timed_chat
from broke.bench.suite import BenchPrompt, suite
from broke.catalog import load_catalog, local_backend_id, local_model_name
from broke.errors import BrokeError, InvalidInputError, NotFoundError
from broke.machine import hardware, model_identity, software
from broke.routing.backends import find_backend
from broke.state.model import State

WARMUP_PROMPT = "Say hello."
MEMORY_SAMPLE_S = 0.05


@dataclass(frozen=True)
class Target:
    backend: str
    where: str  # "worker" (a local model's own worker) or "gateway" (through the running gateway)


@dataclass
class Events:
    """What the display hears about: a model starting, each run finishing, a model ending."""

    model_started: Callable[[Target, int], None] = lambda target, total: None
    step: Callable[[Target, str], None] = lambda target, what: None
    run_done: Callable[[Target, BenchPrompt, PromptRun], None] = lambda target, prompt, run: None
    model_done: Callable[[Target, dict], None] = lambda target, result: None


@dataclass
class Outcome:
    record: dict
    path: Path
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        """The backends nothing could be measured of (the record keeps their errors)."""
        return [m["backend"] for m in self.record["models"] if not baselines.measured(m)]


class NothingMeasured(BrokeError):
    """Not one model could be measured: no record is saved."""


def plan(state: State, models: list[str], backends: list[str]) -> list[Target]:
    """The targets in order: the named local models (default: every local model in the state), then backends."""
    catalog = load_catalog()
    local = [local_backend_id(m) for m in models]
    if not models and not backends:
        local = [b for b, custom in state.backends.items() if custom.provider == "mlx"]
        if not local:
            raise InvalidInputError("no local models in the state; `broke local add PATH|REPO` first, "
                                    "or name one with --add (e.g. --add broke-demo)")
    for backend_id in local:
        backend = find_backend(backend_id, state, catalog)
        if backend is None or backend.provider != "mlx":
            raise NotFoundError(f"unknown local model '{backend_id}'; see `broke local models`")
    for backend_id in backends:
        if find_backend(backend_id, state, catalog) is None:
            raise NotFoundError(f"unknown backend '{backend_id}'; see `broke models`")
    targets = [Target(b, "worker") for b in dict.fromkeys(local)]
    return targets + [Target(b, "gateway") for b in dict.fromkeys(backends)]


class MemoryPeak:
    """Samples the resident memory of a worker's server process(es) in a thread; keeps the peak."""

    def __init__(self, supervisor_pid: int) -> None:
        import psutil

        self._root = psutil.Process(supervisor_pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-peak", daemon=True)
        self._thread.start()

    def _servers(self):
        import psutil

        try:
            return self._root.children(recursive=True)
        except psutil.Error:
            return []

    def _sample(self, *, high_water: bool = False) -> None:
        import psutil

        for process in self._servers():
            try:
                self.peak = max(self.peak, process.memory_info().rss,
                                _high_water_mark(process.pid) if high_water else 0)
            except psutil.Error:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(MEMORY_SAMPLE_S)

    def finish(self) -> int:
        """Stop sampling (call while the worker still runs) and return the peak in bytes.

        Linux keeps each process's peak (VmHWM), so it is read once here, not at every sample.
        """
        self._sample(high_water=True)
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


def _high_water_mark(pid: int) -> int:
    """Linux's own record of a process's peak resident memory (VmHWM), 0 where there is none."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _figures(prompt: BenchPrompt, runs: list[PromptRun]) -> dict:
    good = [r for r in runs if not r.error]
    return {
        "name": prompt.name, "kind": prompt.kind, "max_tokens": prompt.max_tokens,
        "runs": len(runs), "errors": len(runs) - len(good),
        "prompt_tokens": spread([r.prompt_tokens for r in good]),
        "completion_tokens": spread([r.completion_tokens for r in good]),
        "ttft_s": spread([r.ttft_s for r in good]),
        "prefill_tps": spread([r.prefill_tps for r in good if r.prefill_tps > 0]),
        "decode_tps": spread([r.decode_tps for r in good if r.decode_tps > 0]),
        "total_s": spread([r.total_s for r in good]),
    }


def _summary(prompts: list[dict]) -> dict:
    """The figures routing uses: decode speed (median over the generating prompts), prefill, first token."""
    def median_of(kinds: tuple[str, ...], metric: str) -> float | None:
        values = [p[metric]["median"] for p in prompts if p["kind"] in kinds and p[metric]]
        return round(statistics.median(values), 6) if values else None

    return {"decode_tps": median_of(("chat", "code"), "decode_tps"),
            "prefill_tps": median_of(("prefill",), "prefill_tps"),
            "ttft_s": median_of(("chat",), "ttft_s")}


class _Measure:
    """Runs the suite against one endpoint and collects per-prompt figures."""

    def __init__(self, url: str, model: str, headers: dict[str, str], seed: bool, target: Target,
                 prompts: list[BenchPrompt], runs: int, events: Events) -> None:
        self.url, self.model, self.headers, self.seed = url, model, headers, seed
        self.target, self.prompts, self.runs, self.events = target, prompts, runs, events
        self.results: list[dict] = []
        self.errors: list[str] = []

    def warm_up(self) -> bool:
        self.events.step(self.target, "warming up")
        run = timed_chat(self.url, self.model, WARMUP_PROMPT, 8, headers=self.headers, seed=self.seed)
        if run.error:
            self.errors.append(f"warm-up: {run.error}")
        return not run.error

    def suite(self) -> None:
        counter = 0
        for prompt in self.prompts:
            runs: list[PromptRun] = []
            try:
                for _ in range(self.runs):
                    counter += 1
                    run = timed_chat(self.url, self.model, prompt.message(counter), prompt.max_tokens,
                                     headers=self.headers, seed=self.seed)
                    if run.error:
                        self.errors.append(f"{prompt.name}: {run.error}")
                    runs.append(run)
                    self.events.run_done(self.target, prompt, run)
            finally:
                if runs:  # an interrupted prompt keeps the runs it finished
                    self.results.append(_figures(prompt, runs))


def _model_result(target: Target, identity: dict, measure: _Measure, *, complete: bool,
                  load_s: float | None = None, peak: int | None = None, worker: dict | None = None) -> dict:
    return {"backend": target.backend, "where": target.where, "identity": identity,
            "complete": complete and len(measure.results) == len(measure.prompts),
            "load_s": None if load_s is None else round(load_s, 6), "peak_memory_bytes": peak,
            "worker": worker, "errors": measure.errors, "prompts": measure.results,
            "summary": _summary(measure.results)}


def _bench_worker(home: Path, state: State, target: Target, prompts: list[BenchPrompt], runs: int,
                  events: Events, results: list[dict]) -> None:
    """Start the model's worker alone, measure it, stop it; appends the model's result (even when interrupted)."""
    from broke.local.models import model_path
    from broke.local.workers import start_worker, stop_record

    name = local_model_name(target.backend)
    backend = find_backend(target.backend, state, load_catalog())
    if name is None or backend is None:  # plan() checked both
        raise NotFoundError(f"unknown local model '{target.backend}'; see `broke local models`")
    started_at = time.time()
    began = time.perf_counter()
    record, _ = start_worker(home, name, replica=True, progress=lambda what: events.step(target, what))
    load_s = time.perf_counter() - began
    try:  # after the start: the demo model's directory is made by it
        identity = model_identity(name, model_path(backend, home))
        memory = MemoryPeak(record.pid)
    except BaseException:
        stop_record(home, record)
        raise
    measure = _Measure(f"http://127.0.0.1:{record.port}/v1/chat/completions", "default_model", {}, True,
                       target, prompts, runs, events)

    def stop() -> dict:
        peak = memory.finish()
        stop_record(home, record)
        return {"load_s": load_s, "peak": peak,
                "worker": {"started_at": round(started_at, 6), "stopped_at": round(time.time(), 6)}}

    _run(measure, results, identity, stop)


def _bench_gateway(home: Path, state: State, target: Target, prompts: list[BenchPrompt], runs: int,
                   events: Events, results: list[dict]) -> None:
    """Measure a backend through the running gateway's LiteLLM, as that backend's own deployment
    (LiteLLM is started for it if the gateway's slots did not need it)."""
    from broke.control.client import running_record
    from broke.control.runfiles import master_key
    from broke.control.supervisor import ensure_litellm

    record = running_record(home)
    deployment = next((d for d in record.deployments
                       if d == target.backend or d.startswith(target.backend + "@")), None)
    if deployment is None:
        raise NotFoundError(f"backend '{target.backend}' is not loaded in the running gateway (no slot uses it, "
                            "or its key is missing); add it to a slot and `broke restart`")
    backend = find_backend(target.backend, state, load_catalog())
    if backend is None:  # plan() checked it
        raise NotFoundError(f"unknown backend '{target.backend}'; see `broke models`")
    litellm = ensure_litellm(home, wait=True)
    measure = _Measure(f"http://127.0.0.1:{litellm.port}/v1/chat/completions", deployment,
                       {"authorization": f"Bearer {master_key(home)}"}, False, target, prompts, runs, events)
    _run(measure, results, {"name": backend.model})


def _run(measure: _Measure, results: list[dict], identity: dict, finish: Callable[[], dict] = dict) -> None:
    """Warm up and run the suite; whatever happens, `finish` (it returns extra result fields), then
    append the model's result when anything was measured (an interrupted model keeps its finished runs)."""
    complete = False
    try:
        if measure.warm_up():
            measure.suite()
        complete = True
    finally:
        extra = finish()
        if complete or measure.results:
            results.append(_model_result(measure.target, identity, measure, complete=complete, **extra))


def benchmark(home: Path, state: State, targets: list[Target], *, suite_name: str, runs: int,
              label: str = "", allow_shared: bool = False, events: Events | None = None) -> Outcome:
    """Benchmark `targets` one after another and save the baseline record (also when interrupted)."""
    from broke.local.workers import read_workers, worker_running

    events = events or Events()
    if runs < 1:
        raise InvalidInputError("--runs must be at least 1")
    prompts = suite(suite_name)
    running = [w.backend for w in read_workers(home) if worker_running(w)]
    if running and any(t.where == "worker" for t in targets) and not allow_shared:
        raise InvalidInputError(
            f"{len(running)} local worker(s) are running ({', '.join(sorted(set(running)))}): they would share "
            "memory and CPU with the model measured; stop them (`broke worker stop NAME` or `broke stop`) "
            "or pass --allow-shared")
    if any(t.where == "gateway" for t in targets):
        from broke.control.client import running_record

        running_record(home)  # a clear error now, before any model is started
    machine = hardware()
    if label:
        machine["label"] = label[:80]
    models: list[dict] = []
    record = {"schema_version": baselines.SCHEMA_VERSION, "kind": baselines.KIND, "id": baselines.new_id(),
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "suite": suite_name,
              "runs": runs, "complete": False, "alone": not running, "machine": machine,
              "software": software(), "models": models}
    interrupted = False
    try:
        for target in targets:
            events.model_started(target, len(prompts) * runs)
            run_one = _bench_worker if target.where == "worker" else _bench_gateway
            try:
                run_one(home, state, target, prompts, runs, events, models)
            except BrokeError as exc:  # this model could not be measured: say so, go on with the next
                models.append(_failed(target, str(exc)))
            events.model_done(target, models[-1])
        record["complete"] = True
    except KeyboardInterrupt:
        if not models:
            raise
        interrupted = True
    if not any(baselines.measured(m) for m in models):
        raise NothingMeasured("nothing could be measured, no baseline saved: " + "; ".join(
            f"{m['backend']}: {m['errors'][0] if m['errors'] else 'no figures'}" for m in models))
    path = baselines.save(home, baselines.scrubbed(record))
    return Outcome(record, path, interrupted)


def _failed(target: Target, error: str) -> dict:
    return {"backend": target.backend, "where": target.where, "identity": {"name": target.backend},
            "complete": False, "load_s": None, "peak_memory_bytes": None, "worker": None, "errors": [error],
            "prompts": [], "summary": _summary([])}
