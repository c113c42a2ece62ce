"""Live checks for `doctor`: is the gateway up, are the routed backends reachable, is each choice loaded."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from broke.context import RoutingContext
from broke.control.supervisor import status
from broke.diagnostics import Finding
from broke.errors import StateFileError
from broke.health import corrupt_copies, load_health
from broke.routing.backends import api_base, endpoint, find_backend
from broke.routing.resolve import Resolution


def health_file(home: Path) -> dict[str, Any]:
    """`status`'s view of health.json: why it cannot be read ("" = it can) and the corrupt copies kept aside."""
    path = home / "health.json"
    try:
        load_health(path)
        problem = ""
    except StateFileError as exc:
        problem = str(exc)
    return {"path": str(path), "problem": problem, "kept_aside": [str(p) for p in corrupt_copies(path)]}


def _reachable(url: str) -> str:
    """"" if an HTTP server answers at `url` (any status), else why not."""
    try:
        httpx.get(url, timeout=3.0)
        return ""
    except httpx.HTTPError as exc:
        return type(exc).__name__


def live_checks(ctx: RoutingContext, resolutions: list[Resolution]) -> tuple[dict, list[Finding]]:
    """The gateway's state and findings from talking to it and to the backends it would use."""
    current = status(ctx.home)
    findings: list[Finding] = []
    report: dict = {"gateway": {"running": current.running, "stale_record": current.stale,
                                "missing": [p.name for p in current.missing]}}
    if current.stale:
        findings.append(Finding("warning", "stale_gateway_record", "gateway",
                                "a gateway record exists but its processes are gone; `broke stop` cleans it"))
    for process in current.missing:
        findings.append(Finding("error", "gateway_process_down", "gateway",
                                f"{process.name} (pid {process.record.pid}) is not running while the rest of "
                                f"the gateway is; `broke start` brings it back (see {process.record.log})"))
    record = current.record
    if current.running and record is not None:
        try:
            answer = httpx.get(f"{record.base_url}/health", timeout=5.0)
            healthy = answer.status_code == 200
        except httpx.HTTPError:
            healthy = False
        report["gateway"].update(base_url=record.base_url, healthy=healthy)
        if not healthy:
            findings.append(Finding("error", "gateway_unhealthy", "gateway",
                                    f"the gateway does not answer /health; see {record.front.log}"))
        loaded = set(record.deployments)
        for r in resolutions:
            if r.chosen and r.chosen.deployment not in loaded:
                findings.append(Finding("warning", "not_loaded", r.slot,
                                        f"{r.chosen.deployment} is not in the running gateway; `broke restart`"))
    else:
        findings.append(Finding("info", "gateway_down", "gateway", "the gateway is not running (`broke start`)"))
    from broke.shared import shared_status

    report["shared"] = shared_status(ctx.home)
    if report["shared"] not in ("off", "ok"):
        findings.append(Finding("warning", "shared_state_down", "redis", report["shared"] +
                                "; it shares again when Redis answers"))
    from broke.local.workers import inspect_worker, read_workers

    report["workers"] = []
    for worker in read_workers(ctx.home):
        view = inspect_worker(ctx.home, worker)
        running = view.state in ("ready", "starting", "restarting")
        ready = view.state == "ready"
        report["workers"].append({"backend": worker.backend, "port": worker.port, "host": worker.host,
                                  "running": running, "ready": ready, "state": view.state,
                                  "pid": worker.pid, "server_pid": view.server_pid,
                                  "health": ctx.health.model_status(worker.backend, ctx.now, worker.name)})
        if view.state == "orphaned":
            findings.append(Finding("error", "worker_orphaned", worker.backend,
                                    f"the server of {worker.backend} on port {worker.port} outlived its "
                                    f"supervisor (pid {worker.pid}); `broke worker stop {worker.name}` ends it"))
        elif not ready:
            findings.append(Finding("error" if not running else "warning", "worker_down", worker.backend,
                                    f"the worker of {worker.backend} on port {worker.port} is "
                                    f"{'not running' if not running else view.state}; see {worker.log}"))
    bases, probes = {}, {}
    for r in resolutions:
        if r.chosen:
            backend = find_backend(r.chosen.backend, ctx.state, ctx.catalog)
            provider = ctx.catalog.providers.get(backend.provider) if backend else None
            if backend and backend.api_base and provider:
                bases[backend.id] = api_base(backend, provider)
                probes[backend.id] = endpoint(backend, provider, "/v1/models")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(probes, pool.map(_reachable, probes.values()), strict=True))
    report["backends"] = {b: {"api_base": bases[b], "reachable": not why, "error": why or None}
                          for b, why in results.items()}
    for backend_id, why in results.items():
        if why:
            findings.append(Finding("error", "unreachable", backend_id,
                                    f"{backend_id} does not answer at {bases[backend_id]} ({why})"))
    return report, findings
