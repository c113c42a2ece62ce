"""What the dashboard shows, as plain data: the resolver's answers, health, traffic figures, workers
and baselines. Each view reads what `broke list`, `explain`, `metrics`, `worker list` and
`baseline compare` read; none of them decides anything of its own."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from broke.errors import BrokeError
from broke.gateway.metrics import Metrics, quantile
from broke.health import Health, HealthRecord
from broke.state.model import State
from broke.state.store import StateStore


def slots_view(home: Path) -> dict:
    """Every slot's chain and what a request for it gets now (the resolver, as `broke list` asks it)."""
    from broke.context import RoutingContext
    from broke.presets import profiles, teams
    from broke.routing.backends import routes_by_complexity

    ctx = RoutingContext.load(StateStore(home))
    state = ctx.state
    rows = [{**row, "by_complexity": routes_by_complexity(resolution.slot, state),
             "candidates": [{"deployment": c.deployment, "source": c.source, "usable": c.usable,
                             "skip_reason": c.skip_reason} for c in resolution.candidates]}
            for row, resolution in ctx.slot_rows()]
    router = state.router
    return {
        "generation": state.generation,
        "frozen": state.frozen,
        "active_team": state.active_team,
        "active_profile": state.active_profile,
        "slots": rows,
        "tiers": {tier: list(backends) for tier, backends in router.tiers.items()},
        "thresholds": {"balanced_from": router.balanced_from, "premium_from": router.premium_from},
        "backends": [*ctx.catalog.backends, *sorted(state.backends)],
        "teams": [e.name for e in teams(home).list()],
        "profiles": [e.name for e in profiles(home).list()],
    }


def _records(records: dict[str, HealthRecord], now: float, refs: Mapping[str, str] | None = None) -> list[dict]:
    rows = []
    for name, record in sorted(records.items()):
        status = record.effective(now)
        remaining = record.until - now if record.until is not None and status != "healthy" else None
        row = {"name": name, "status": status, "reason": record.reason, "failures": record.failures,
               "remaining_s": round(remaining, 1) if remaining is not None else None}
        if refs is not None:
            row["key_ref"] = refs.get(name)
        rows.append(row)
    return rows


def health_view(health: Health, now: float, key_refs: Mapping[str, str]) -> dict:
    """Keys (by variable name and reference, never value), backends and workers, with cooldowns left."""
    return {"generation": health.generation, "keys": _records(health.keys, now, key_refs),
            "models": _records(health.models, now), "workers": _records(health.workers, now)}


def _summary(requests: dict[str, int], errors: dict[str, int], failovers: dict[str, int],
             latencies: dict[str, list[float]]) -> list[dict]:
    rows = []
    for name in sorted(set(requests) | set(failovers)):
        window = latencies.get(name, [])
        count = requests.get(name, 0)
        rows.append({
            "name": name, "requests": count, "errors": errors.get(name, 0),
            "error_rate": round(errors.get(name, 0) / count, 3) if count else 0.0,
            "failovers": failovers.get(name, 0),
            "p50_ms": round(quantile(window, 0.5) * 1000, 1) if window else None,
            "p90_ms": round(quantile(window, 0.9) * 1000, 1) if window else None,
        })
    return rows


def stats_view(metrics: Metrics) -> dict:
    """Requests, error rate, failovers and latency quantiles per slot and per backend (since start)."""
    views: dict[str, object] = {}
    for index, key in ((0, "slots"), (1, "backends")):
        requests: dict[str, int] = defaultdict(int)
        errors: dict[str, int] = defaultdict(int)
        failovers: dict[str, int] = defaultdict(int)
        latencies: dict[str, list[float]] = defaultdict(list)
        for (slot, backend, status), count in metrics.requests.items():
            name = (slot, backend)[index]
            requests[name] += count
            if status >= 400:
                errors[name] += count
        for (slot, backend, _), count in metrics.failovers.items():
            failovers[(slot, backend)[index]] += count
        for pair, window in metrics.latency.items():
            latencies[pair[index]].extend(window)
        views[key] = _summary(requests, errors, failovers, latencies)
    views["in_flight"] = metrics.in_flight
    return views


def workers_view(home: Path) -> list[dict]:
    """Local workers as `broke worker list` sees them (asks each whether it answers: call off the loop)."""
    from broke.local.workers import inspect_worker, read_workers

    rows = []
    for record in read_workers(home):
        view = inspect_worker(home, record)
        rows.append({"model": record.name, "backend": record.backend, "port": record.port,
                     "pid": record.pid, "server_pid": view.server_pid, "state": view.state,
                     "exposed": record.exposed})
    return rows


def nodes_view(state: State, health: Health, now: float) -> list[dict]:
    """Workers on other machines (`broke node add`), with their model's health as routing sees it."""
    from broke.catalog import local_backend_id

    return [{"name": name, "url": node.url, "backend": local_backend_id(node.model),
             "status": health.model_status(local_backend_id(node.model), now, node.model)}
            for name, node in sorted(state.nodes.items())]


def baselines_view(home: Path, metrics: Iterable[str] = ("decode", "ttft")) -> dict:
    """`baseline compare` figures per metric: models × machines; a bad record is reported, not raised."""
    from broke.baselines import METRICS, compare

    out: dict = {"metrics": {}, "error": None}
    try:
        for metric in metrics:
            models, machines, cells = compare(home, metric)
            out["metrics"][metric] = {
                "unit": METRICS[metric][1], "higher_is_better": METRICS[metric][2],
                "models": models, "machines": machines,
                "cells": [[model, machine, value] for (model, machine), value in cells.items()],
            }
    except BrokeError as exc:
        out["error"] = str(exc)
    return out


def cost_view(home: Path, state: State) -> dict:
    """Spend and savings (what `broke cost` reads): in total, per slot and per day, and every budget."""
    import time

    from broke.catalog import load_catalog
    from broke.cost.ledger import summarize
    from broke.cost.standing import standings
    from broke.keys import provider_env

    try:
        by_slot = summarize(home, by="slot")
        by_day = summarize(home, by="day", since=time.time() - 14 * 86400)
        budgets = standings(home, state, load_catalog(), provider_env(home / ".env"), time.time())
    except BrokeError as exc:
        return {"error": str(exc)}
    return {**by_slot.to_dict(), "days": by_day.rows, "budgets": [b.to_dict() for b in budgets]}
