"""Relaying an upstream's answer to the client: small JSON at once, event streams chunk by chunk,
under the model name the client asked for; the answer's end is recorded once."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from starlette.responses import Response, StreamingResponse

from broke.gateway.load import Lease, WorkerLoad
from broke.gateway.metrics import Metrics
from broke.gateway.outcomes import Answered, Recorder
from broke.gateway.traffic import Trace
from broke.gateway.wire import ModelStamp, usage_tokens

DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "te",
                            "trailer", "upgrade", "server", "date", "set-cookie", "alt-svc"}


def response_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    """The upstream's headers a client may see (no hop-by-hop ones, nothing of LiteLLM's)."""
    return {k: v for k, v in upstream.headers.items()
            if k.lower() not in DROPPED_RESPONSE_HEADERS
            and not k.lower().startswith(("x-litellm", "llm_provider-"))}


@dataclass
class Relay:
    """One answer on its way: where it came from, and what to release and count when it ends."""

    upstream: aiohttp.ClientResponse
    headers: dict[str, str]
    slot: str
    backend: str
    started: float
    lease: Lease | None
    stamp: ModelStamp
    trace: Trace
    spend: Callable[[int], None]  # counts the answer's tokens against the client's limits

    async def response(self, load: WorkerLoad, metrics: Metrics, recorder: Recorder, *,
                       spends: bool = True) -> Response:
        """The client's response. The tokens an answer reports count against the client's limit
        unless it only counted them (`spends` false; streams always count)."""
        upstream, trace = self.upstream, self.trace
        if "text/event-stream" not in upstream.headers.get("content-type", ""):
            try:
                content = self.stamp.whole(await upstream.read())
            finally:
                upstream.release()
                if self.lease:
                    load.release(self.lease)
            trace.status, trace.tokens = upstream.status, usage_tokens(content) or None
            if spends:
                self.spend(trace.tokens or 0)
            await recorder.record(Answered(self.slot, self.backend, upstream.status, self.started, trace))
            return Response(content, status_code=upstream.status, headers=self.headers)

        metrics.in_flight += 1  # until the stream ends, not until its headers are sent

        async def stream() -> AsyncIterator[bytes]:
            tail = b""
            try:
                async for chunk in upstream.content.iter_any():
                    tail = (tail + chunk)[-4096:]
                    lines = self.stamp.feed(chunk)
                    if lines:
                        yield lines
                rest = self.stamp.flush()
                if rest:
                    yield rest
            finally:
                upstream.close()  # a client that left mid-stream cancels the upstream request
                metrics.in_flight -= 1
                if self.lease:
                    load.release(self.lease)
                trace.status, trace.tokens = upstream.status, usage_tokens(tail) or None
                self.spend(trace.tokens or 0)
                await recorder.record(Answered(self.slot, self.backend, upstream.status, self.started, trace))

        return StreamingResponse(stream(), status_code=upstream.status, headers=self.headers)
