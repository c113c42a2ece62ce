"""What happened to a request, as values, and the one place that records them: metrics, the traffic
feed, health transitions, the rotation log and the gateway's log."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broke.cost.book import CostBook
from broke.cost.usage import Usage
from broke.gateway.metrics import Metrics
from broke.gateway.traffic import Trace, Traffic
from broke.harness.requests import RunRequests
from broke.health import BUSY, HealthRecord, HealthTransitions, blames_key
from broke.routing.resolve import Candidate
from broke.routing.rotation import RotationState

if TYPE_CHECKING:
    from broke.gateway.routed import OutcomeLog
    from broke.shared import Shared

log = logging.getLogger("broke.gateway")


@dataclass(frozen=True)
class Failure:
    """An attempt that failed before anything reached the client."""

    reason: str  # a rotation-log reason code
    status: int | None  # the upstream's HTTP status (None: timeout or no connection)
    answer: tuple[int, bytes, dict[str, str]]  # what the client gets if nothing else answers
    retry_after_s: float | None = None  # what the upstream's Retry-After asked for


@dataclass(frozen=True)
class Refused:
    """broke answered the request itself, before any attempt (auth, body, slot, access, rate)."""

    metric: str
    status: int


@dataclass(frozen=True)
class Unrouted:
    """A request that resolved to nothing the running gateway can try: refused, and in the traffic feed."""

    metric: str
    status: int
    started: float
    trace: Trace


@dataclass(frozen=True)
class Answered:
    """The request's answer has ended (or broke answered with an error after its attempts)."""

    slot: str
    backend: str  # "-" when no backend answered
    status: int
    started: float  # perf_counter at the request's start
    trace: Trace
    priced: bool = True  # False: token counting, which costs nothing and has no ledger row


@dataclass(frozen=True)
class AttemptFailed:
    """One attempt failed before its first byte: the key, backend or replica sits out."""

    slot: str
    candidate: Candidate
    failure: Failure
    key_ref: str | None
    cooldown_s: float | None = None  # the key policy's cooldown for a rate-limited key
    backend_cooldown_s: float | None = None  # the slot's model policy cap on a failed backend's sit-out
    worker: str | None = None  # the replica (NAME@PORT) that failed, for a local model


@dataclass(frozen=True)
class Succeeded:
    """An attempt got its answer: the failures of its backend, key and replica are forgiven."""

    forgiven: list[tuple[str, str]]  # (health section, name), from HealthTransitions.to_forgive


@dataclass(frozen=True)
class PassedOver:
    """A busy local model that a request passed over for a later candidate."""

    slot: str
    candidate: Candidate


Outcome = Refused | Unrouted | Answered | AttemptFailed | PassedOver | Succeeded


class Recorder:
    """Records every outcome the same way, wherever in the proxy it happened."""

    def __init__(self, metrics: Metrics, traffic: Traffic, transitions: HealthTransitions,
                 rotation: RotationState, costs: CostBook, routed: OutcomeLog | None = None,
                 runs: RunRequests | None = None, shared: Shared | None = None) -> None:
        self.metrics, self.traffic, self.transitions, self.rotation = metrics, traffic, transitions, rotation
        self.costs = costs
        self.routed = routed  # the `auto` router's outcome records
        self.runs = runs  # the requests of harness runs, kept with their run
        self.shared = shared  # other gateways on the same Redis learn of cooldowns from it

    @staticmethod
    async def _observe(write: Callable[..., object], *args: Any) -> object:
        """A health write, off the event loop; if it fails (a full disk, a lock held too long) the
        request goes on: a runtime observation never takes the request path down."""
        try:
            return await asyncio.to_thread(write, *args)
        except Exception:
            log.exception("health not recorded (%s); the request goes on", getattr(write, "__name__", write))
            return None

    async def record(self, outcome: Outcome) -> None:
        if isinstance(outcome, Refused):
            self.metrics.reject(outcome.metric, outcome.status)
        elif isinstance(outcome, Unrouted):
            self.metrics.reject(outcome.metric, outcome.status)
            self.traffic.publish(outcome.trace, outcome.started)
            if self.runs is not None:
                self.runs.add(outcome.trace)
        elif isinstance(outcome, Answered):
            self.metrics.answered(outcome.slot, outcome.backend, outcome.status, time.perf_counter() - outcome.started)
            if outcome.trace.node:
                self.metrics.ran_on(outcome.backend, outcome.trace.node, outcome.trace.replica, outcome.status)
            if outcome.priced:
                self._priced(outcome)
            self.traffic.publish(outcome.trace, outcome.started)
            if self.routed is not None:
                self.routed.answered(outcome.trace)
            if self.runs is not None:
                self.runs.add(outcome.trace)
        elif isinstance(outcome, Succeeded):
            if outcome.forgiven:
                await self._observe(self.transitions.forgive, outcome.forgiven)
        elif isinstance(outcome, PassedOver):
            candidate = outcome.candidate
            self.metrics.failed_over(outcome.slot, candidate.backend, BUSY)
            self.transitions.log.write(event="overflow", slot=outcome.slot, provider=candidate.provider,
                                       backend=candidate.backend, reason=BUSY, status=None)
        else:
            await self._failed(outcome)

    def _priced(self, outcome: Answered) -> None:
        """The answer's cost and its reference's, in its trace, the ledger and the cost counters."""
        trace = outcome.trace
        usage = Usage(trace.input_tokens, trace.output_tokens, trace.cache_read_tokens, trace.cache_write_tokens)
        priced = self.costs.record(request_id=trace.request_id, ts=time.time(), client=trace.client,
                                   slot=outcome.slot, backend=outcome.backend, key_ref=trace.key_ref,
                                   usage=usage, status=outcome.status)
        trace.cost_usd, trace.reference_usd = priced.cost_usd, priced.reference_usd
        self.metrics.priced(outcome.slot, outcome.backend, priced.cost_usd, priced.reference_usd)

    async def _failed(self, outcome: AttemptFailed) -> None:
        candidate, failure, slot = outcome.candidate, outcome.failure, outcome.slot
        self.metrics.failed_over(slot, candidate.backend, failure.reason)
        if outcome.worker is not None:
            await self._observe(self.transitions.worker_failed, outcome.worker, failure.reason)
            self.transitions.log.write(event="failover", slot=slot, provider=candidate.provider,
                                       backend=candidate.backend, worker=outcome.worker, reason=failure.reason,
                                       status=failure.status)
            log.warning("slot %s: worker %s failed (%s); trying another", slot, outcome.worker, failure.reason)
            return
        if blames_key(failure.reason) and candidate.key_env:
            record = await self._observe(self.transitions.key_failed, candidate.key_env, failure.reason,
                                         outcome.cooldown_s, failure.retry_after_s)
            self.rotation.key_failed(candidate.provider, candidate.key_env)
            if self.shared and outcome.key_ref and isinstance(record, HealthRecord):
                await self.shared.cooled("keys", outcome.key_ref, record)
        else:
            record = await self._observe(self.transitions.backend_failed, candidate.backend, failure.reason,
                                         failure.retry_after_s, outcome.backend_cooldown_s)
            if self.shared and isinstance(record, HealthRecord):
                await self.shared.cooled("models", candidate.backend, record)
        self.transitions.log.write(event="failover", slot=slot, provider=candidate.provider,
                                   backend=candidate.backend, key_ref=outcome.key_ref, reason=failure.reason,
                                   status=failure.status)
        log.warning("slot %s: %s failed (%s); trying the next candidate", slot, candidate.deployment, failure.reason)
