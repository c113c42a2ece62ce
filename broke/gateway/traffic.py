"""Recent requests of the front proxy, for the dashboard: a short history and live listeners.

A trace holds what routing decided and how the answer went, never the prompt or the answer.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass

#: Requests kept for the dashboard's table.
HISTORY = 200
#: Traces a slow listener may fall behind by before it misses some.
LISTENER_BACKLOG = 256


def new_request_id() -> str:
    """A request's id: unique, unguessable, short enough to type."""
    return "req_" + secrets.token_hex(10)


@dataclass
class Trace:
    """One routed request, filled in as it goes; published when its answer has ended."""

    ts: float
    request_id: str  # what the answer's x-broke-request-id says: `broke feedback` names a request by it
    client: str  # the token's owner: "client" or "profile:NAME"
    slot: str
    requested: str
    generation: int
    tier: str = ""
    p_strong: float | None = None
    prompt_complexity: float | None = None
    temperature: str = ""
    backend: str = "-"
    node: str = ""  # where a local model's answer ran: a node's name or "local" ("": not on a worker)
    replica: str = ""  # which of its workers: NAME@PORT here, host:port on a node
    key_ref: str | None = None
    status: int = 0
    attempts: int = 0
    latency_ms: float = 0.0
    tokens: int | None = None  # None: the answer did not say
    # the answer's usage by kind (broke.cost.usage), and what it cost and would have cost at the slot's
    # reference backend (None: unpriced, or not priced yet: a stream is priced when it ends)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    reference_usd: float | None = None
    stream: bool = False
    error: str = ""  # why broke answered with an error of its own (no candidate, all failed)


class Traffic:
    def __init__(self, history: int = HISTORY) -> None:
        self.recent: deque[dict] = deque(maxlen=history)
        self.listeners: set[asyncio.Queue[dict]] = set()

    def begin(self, client: str, slot: str, requested: str, generation: int, request_id: str) -> Trace:
        return Trace(ts=time.time(), client=client, slot=slot, requested=requested, generation=generation,
                     request_id=request_id)

    def publish(self, trace: Trace, started: float) -> None:
        """Record a finished request and hand it to every live listener."""
        trace.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        entry = dict(vars(trace))  # flat fields: a shallow copy is the whole record, at a tenth of asdict's cost
        self.recent.append(entry)
        for queue in self.listeners:
            if queue.full():  # a listener that stopped reading loses its oldest, never blocks the proxy
                queue.get_nowait()
            queue.put_nowait(entry)

    def listen(self) -> asyncio.Queue[dict]:
        queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=LISTENER_BACKLOG)
        self.listeners.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[dict]) -> None:
        self.listeners.discard(queue)
