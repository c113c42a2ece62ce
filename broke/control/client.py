"""Talking to the running gateway from the CLI: probe requests and metrics."""
from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

from broke.control.runfiles import GatewayRecord, TokenStore
from broke.control.supervisor import status
from broke.errors import BrokeError


class NotRunningError(BrokeError):
    """The gateway is not running."""


def running_record(home: Path) -> GatewayRecord:
    current = status(home)
    if not current.running or current.record is None:
        raise NotRunningError("the gateway is not running; start it with `broke start`")
    return current.record


@dataclass(frozen=True)
class ProbeResult:
    slot: str
    status: int
    seconds: float
    backend: str
    attempts: str
    answer: str


def probe(home: Path, slot: str, timeout_s: float = 120.0) -> ProbeResult:
    """One tiny chat request for `slot` through the gateway."""
    record = running_record(home)
    token = TokenStore(home).token_for("client")
    body = {"model": slot, "max_tokens": 64, "messages": [{"role": "user", "content": "Reply with: ok"}]}
    started = time.perf_counter()
    try:
        answer = httpx.post(f"{record.base_url}/v1/chat/completions", json=body, timeout=timeout_s,
                            headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise BrokeError(f"probe of {slot} failed: {type(exc).__name__}: {exc}") from None
    seconds = time.perf_counter() - started
    try:
        data = answer.json()
    except ValueError:
        data = {}
    if answer.status_code == 200:
        text = ((data.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    else:
        text = (data.get("error") or {}).get("message", answer.text[:200]) if isinstance(data, dict) else ""
    return ProbeResult(slot, answer.status_code, seconds, answer.headers.get("x-broke-backend", "-"),
                       answer.headers.get("x-broke-attempts", "-"), str(text).strip())


_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples.append((match.group(1), dict(_LABEL.findall(match.group(2))), float(match.group(3))))
    return samples


def metrics_summary(home: Path) -> list[dict]:
    """Requests, errors, failovers, latency, spend and savings per slot and backend, from the gateway's /metrics
    (unpriced: answers of backends with no price, not in the spend)."""
    record = running_record(home)
    text = httpx.get(f"{record.base_url}/metrics", timeout=10).text
    rows: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"requests": 0, "errors": 0, "failovers": 0, "p50_ms": None, "p99_ms": None, "cost_usd": 0.0,
                 "saved_usd": 0.0, "unpriced": 0})
    for name, labels, value in parse_metrics(text):
        key = (labels.get("slot", ""), labels.get("backend", ""))
        if name == "broke_requests_total":
            rows[key]["requests"] += int(value)
            if int(labels["status"]) >= 400:
                rows[key]["errors"] += int(value)
        elif name == "broke_failovers_total":
            rows[key]["failovers"] += int(value)
        elif name == "broke_request_seconds" and labels.get("quantile") in ("0.5", "0.99"):
            rows[key]["p50_ms" if labels["quantile"] == "0.5" else "p99_ms"] = round(value * 1000, 1)
        elif name in ("broke_cost_usd_total", "broke_saved_usd_total"):
            rows[key]["cost_usd" if name == "broke_cost_usd_total" else "saved_usd"] = round(value, 6)
        elif name == "broke_unpriced_total":
            rows[key]["unpriced"] = int(value)
    return [{"slot": s, "backend": b, **v} for (s, b), v in sorted(rows.items())]


def dashboard_link(home: Path) -> tuple[str, str]:
    """(page URL, one-time login URL valid for a minute) of the running gateway's dashboard."""
    record = running_record(home)
    token = TokenStore(home).token_for("client")
    try:
        answer = httpx.post(f"{record.base_url}/ui/api/link", headers={"authorization": f"Bearer {token}"},
                            timeout=10)
    except httpx.HTTPError as exc:
        raise BrokeError(f"the gateway did not answer: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise BrokeError(f"the gateway refused a dashboard login link (HTTP {answer.status_code}); "
                         "`broke restart` if it predates the dashboard")
    return f"{record.base_url}/ui", record.base_url + answer.json()["path"]
