"""Relaying an upstream's answer to the client: small JSON at once, event streams chunk by chunk,
under the model name the client asked for; the answer's end is recorded once."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import orjson
from starlette.responses import Response, StreamingResponse

from broke.cost.book import cost_header
from broke.cost.usage import Usage, UsageMeter, without_usage_chunk
from broke.gateway.load import Lease, WorkerLoad
from broke.gateway.metrics import Metrics
from broke.gateway.outcomes import Answered, Recorder
from broke.gateway.scrub import Scrubber
from broke.gateway.traffic import Trace
from broke.gateway.wire import ModelStamp

#: What a stream cut after its headers ends with (an SSE error event, read by OpenAI and Anthropic SDKs alike),
#: and the status it is counted under.
CUT_STATUS = 502


def note_usage(trace: Trace, usage: Usage | None) -> None:
    """An answer's usage, by kind, in its trace (`tokens`: None when the answer said nothing)."""
    trace.tokens = usage.total if usage else None
    if usage:
        trace.input_tokens, trace.output_tokens = usage.input, usage.output
        trace.cache_read_tokens, trace.cache_write_tokens = usage.cache_read, usage.cache_write


def is_stream(upstream: aiohttp.ClientResponse) -> bool:
    """Whether an answer is a server-sent event stream."""
    return "text/event-stream" in upstream.headers.get("content-type", "")


def cut_event(why: str) -> bytes:
    """The event that tells a client its stream broke off."""
    error = {"type": "error", "error": {"type": "api_error", "code": "stream_cut", "message": why}}
    return b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"


DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "te",
                            "trailer", "upgrade", "server", "date", "set-cookie", "alt-svc"}


def response_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    """The upstream's headers a client may see (no hop-by-hop ones, nothing of LiteLLM's)."""
    return {k: v for k, v in upstream.headers.items()
            if k.lower() not in DROPPED_RESPONSE_HEADERS
            and not k.lower().startswith(("x-litellm", "llm_provider-"))}


#: What the last event of a complete stream carries, per API (chat completions, Anthropic messages,
#: Responses): a stream that ends without one was cut somewhere.
STREAM_ENDS = (b"[DONE]", b"message_stop", b"response.completed", b"response.incomplete", b"response.failed")


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
    body: bytes | None  # the whole body of an answer that is not a stream (read by the attempt)
    scrub: Scrubber  # masks secrets in an error answer passed on
    idle_s: float  # the longest gap allowed between a stream's chunks
    meter: UsageMeter  # reads the answer's usage in its client API's shape
    strip_usage: bool = False  # the stream's usage chunk was asked for by broke, not by the client

    async def response(self, load: WorkerLoad, metrics: Metrics, recorder: Recorder, *,
                       spends: bool = True) -> Response:
        """The client's response. The tokens an answer reports count against the client's limit
        unless it only counted them (`spends` false; streams always count)."""
        upstream, trace, ok = self.upstream, self.trace, 200 <= self.upstream.status < 300
        if self.body is not None:
            if self.lease:
                load.release(self.lease)
            content = self.stamp.whole(self.body) if ok else self.scrub.bytes(self.body)
            trace.status = upstream.status
            note_usage(trace, self.meter.whole(content))
            if spends:
                self.spend(trace.tokens or 0)
            await recorder.record(Answered(self.slot, self.backend, upstream.status, self.started, trace,
                                           priced=spends))
            headers = {**(self.headers if ok else self.scrub.headers(self.headers)),
                       "x-broke-cost-usd": cost_header(trace.cost_usd, answered=spends)}
            return Response(content, status_code=upstream.status, headers=headers)

        metrics.in_flight += 1  # until the stream ends, not until its headers are sent

        async def stream() -> AsyncIterator[bytes]:
            tail, status, size = b"", upstream.status, 0
            try:
                while True:
                    try:
                        async with asyncio.timeout(self.idle_s):
                            chunk = await upstream.content.readany()
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        stalled = isinstance(exc, TimeoutError)
                        why = f"upstream stream {'stalled' if stalled else 'cut'} after {size} bytes"
                        status, trace.error = CUT_STATUS, why
                        yield cut_event(f"the upstream's stream {'stalled' if stalled else 'broke off'}")
                        return
                    if not chunk:
                        if ok and not any(end in tail for end in STREAM_ENDS):
                            # ended without its API's last event: a hop behind (LiteLLM) lost the upstream
                            status, trace.error = CUT_STATUS, f"upstream stream ended unfinished after {size} bytes"
                        break
                    tail, size = (tail + chunk)[-4096:], size + len(chunk)
                    self.meter.feed(chunk)
                    lines = self.stamp.feed(chunk) if ok else self.scrub.bytes(self.stamp.feed(chunk))
                    if self.strip_usage:
                        lines = without_usage_chunk(lines)
                    if lines:
                        yield lines
                rest = self.stamp.flush()
                if self.strip_usage:
                    rest = without_usage_chunk(rest)
                if rest:
                    yield rest if ok else self.scrub.bytes(rest)
            finally:
                upstream.close()  # a client that left mid-stream cancels the upstream request
                metrics.in_flight -= 1
                if self.lease:
                    load.release(self.lease)
                trace.status = status
                note_usage(trace, self.meter.usage)
                self.spend(trace.tokens or 0)
                await recorder.record(Answered(self.slot, self.backend, status, self.started, trace))

        headers = self.headers if ok else self.scrub.headers(self.headers)
        return StreamingResponse(stream(), status_code=upstream.status, headers=headers)
