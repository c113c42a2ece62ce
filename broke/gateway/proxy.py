"""The front proxy: client auth, model -> slot -> resolver, forward to LiteLLM, fail over before the first byte."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from broke.catalog import load_catalog
from broke.gateway import events
from broke.gateway.events import EventLog
from broke.gateway.auth import Authenticator, Client, Refusal
from broke.gateway.complexity import ComplexityRouter
from broke.gateway.limits import RateLimiter
from broke.gateway.load import Lease, WorkerLoad, worker_key
from broke.gateway.wire import ModelStamp, encode, error_body, usage_tokens
from broke.gateway.live import Watched, watched_speeds
from broke.gateway.metrics import Metrics
from broke.gateway.native import auth_headers, native_route
from broke.gateway.traffic import Trace, Traffic
from broke.gateway.runfiles import GatewayRecord, read_record
from broke.gateway.ui import Dashboard
from broke.health import Health, HealthStore, load_health
from broke.procs import is_ours
from broke.resolver import Candidate, Resolution, Rotation, find_backend, resolve
from broke.state.model import State
from broke.state.store import StateStore, default_state

log = logging.getLogger("broke.gateway")

#: Upstream answers that send the request to the next candidate (only before the first byte).
RETRYABLE = {401, 403, 408, 429} | set(range(500, 600))
#: How long a backend that failed (5xx, timeout, connection) is skipped.
BACKEND_COOLDOWN_S = 30.0
#: How long a key that failed authentication is skipped before it is tried again.
AUTH_RETRY_S = 300.0
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta",
                     "user-agent", "x-request-id")
DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "te",
                            "trailer", "upgrade", "server", "date", "set-cookie", "alt-svc"}
#: The model name mlx_lm.server answers to (any other makes it look on the hub).
DIRECT_WORKER_MODEL = "default_model"
#: How long a request that needs LiteLLM waits for it to start.
LITELLM_WAIT_S = 120.0


class Failure(NamedTuple):
    """An attempt that failed before the first byte."""

    reason: str  # an events reason code
    status: int | None  # the upstream's HTTP status (None: timeout or no connection)
    answer: tuple[int, bytes, dict[str, str]]  # what the client gets if nothing else answers
#: Anthropic's token counting (Claude Code asks it before long prompts): routed like a request,
#: answered natively by Anthropic backends, by LiteLLM for the others, spending no tokens.
COUNT_TOKENS = "/v1/messages/count_tokens"


class FrontProxy:
    def __init__(self, home: Path, record: GatewayRecord, master_key: str) -> None:
        self.home, self.record, self.master_key = home, record, master_key
        self.catalog = load_catalog()
        self.key_names = {name: "set" for name in record.key_refs}
        #: provider keys for native forwarding (from this process's environment, set by `broke start`)
        self.keys = {name: os.environ[name] for name in record.key_refs if name in os.environ}
        self.litellm_up = False
        self.litellm_lock: asyncio.Lock | None = None
        self.deployments = set(record.deployments)
        store = StateStore(home)
        self.state: Watched[State] = Watched(store.path, store.load, default_state)
        health_path = home / "health.json"
        self.health: Watched[Health] = Watched(health_path, lambda: load_health(health_path), Health)
        self.speeds = watched_speeds(home)
        self.auth = Authenticator(home)
        self.complexity = ComplexityRouter(home)
        self.health_store = HealthStore(home)
        self.event_log = EventLog(home / "run" / "rotation.log")
        self.metrics = Metrics()
        self.traffic = Traffic()
        self.rates = RateLimiter()
        self.turns: Counter[str] = Counter()
        self.load = WorkerLoad(record.direct_workers)
        self.sticky_keys: dict[str, str] = {}
        self.upstream_url = f"http://127.0.0.1:{record.litellm.port}"
        self.session: aiohttp.ClientSession | None = None  # made in the server's event loop

    # ---- the ASGI app ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route(COUNT_TOKENS, self.count_tokens, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health_check, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
            *Dashboard(self).routes(),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette):
        # aiohttp, not httpx, for the LiteLLM hop: about half the CPU per request. Bytes pass through
        # as they come (no decompression), and no cookies are kept between clients.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        )
        self.litellm_lock = asyncio.Lock()
        if self.state.get().router.tiers:  # `auto` is routed by complexity: have the model ready
            self.complexity.warm_up()
        try:
            yield
        finally:
            await self.session.close()

    async def chat(self, request: Request) -> Response:
        return await self.handle(request, "/v1/chat/completions")

    async def messages(self, request: Request) -> Response:
        return await self.handle(request, "/v1/messages")

    async def responses(self, request: Request) -> Response:
        return await self.handle(request, "/v1/responses")

    async def count_tokens(self, request: Request) -> Response:
        return await self.handle(request, COUNT_TOKENS)

    # ---- plain endpoints ------------------------------------------------------------------------
    @staticmethod
    def _loopback(request: Request) -> bool:
        host = request.client.host if request.client else ""
        return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")

    async def health_check(self, request: Request) -> Response:
        if not self._loopback(request):
            return error_body(403, "forbidden", "/health answers loopback clients only")
        litellm = await self._litellm_state()
        body = {"status": "ok" if litellm != "down" else "degraded", "litellm": litellm,
                "generation": self.state.get().generation}
        return JSONResponse(body, status_code=200 if litellm != "down" else 503)

    async def _litellm_state(self) -> str:
        """up, starting, not started (no request needed it yet) or down."""
        return "up" if await self._litellm_answers() else await self._litellm_process()

    async def _litellm_process(self) -> str:
        """What LiteLLM's recorded process is: not started, starting (alive, not yet answering) or down."""
        record = await asyncio.to_thread(read_record, self.home)
        if record is None or record.litellm.pid <= 0:
            return "not started"
        return "starting" if await asyncio.to_thread(is_ours, record.litellm) else "down"

    async def _litellm_answers(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                async with self.session.get(self.upstream_url + "/health/liveliness") as answer:
                    self.litellm_up = answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            self.litellm_up = False
        return self.litellm_up

    async def _litellm_ready(self) -> str:
        """"" once LiteLLM answers (started on demand, waited for up to LITELLM_WAIT_S), else why not."""
        if self.litellm_up:
            return ""
        from broke.gateway.supervisor import ensure_litellm

        async with self.litellm_lock:
            deadline = time.monotonic() + LITELLM_WAIT_S
            while not await self._litellm_answers():
                if await self._litellm_process() != "starting":
                    log.info("starting LiteLLM: a request needs translation")
                    try:
                        await asyncio.to_thread(ensure_litellm, self.home)
                    except Exception as exc:  # noqa: BLE001 - reported to the client as one line
                        return f"LiteLLM could not be started: {exc}"
                if time.monotonic() > deadline:
                    return f"LiteLLM did not answer within {LITELLM_WAIT_S:.0f}s; see {self.record.litellm.log}"
                await asyncio.sleep(0.25)
        return ""

    async def metrics_text(self, request: Request) -> Response:
        if not self._loopback(request):
            return error_body(403, "forbidden", "/metrics answers loopback clients only")
        return PlainTextResponse(self.metrics.render(self.state.get().generation),
                                 media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        client = self._authenticate(request)
        if isinstance(client, Response):
            return client
        limits = client.limits(self.state.get().access)
        slots = [s for s in self.catalog.slots if all(access.allows(s) for _, access in limits)]
        return JSONResponse({"object": "list", "data": [
            {"id": slot, "object": "model", "created": 0, "owned_by": "broke"} for slot in slots]})

    # ---- auth and limits ------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> Client | Response:
        verdict = self.auth.check(request)
        if isinstance(verdict, Refusal):
            self.metrics.reject(verdict.metric, verdict.status)
            return error_body(verdict.status, verdict.code, verdict.message)
        return verdict

    # ---- routing ----------------------------------------------------------------------------------
    async def handle(self, request: Request, path: str) -> Response:
        started = time.perf_counter()
        client = self._authenticate(request)
        if isinstance(client, Response):
            return client
        body = await self._read_body(request)
        if isinstance(body, Response):
            return body
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            self.metrics.reject("bad_request", 400)
            return error_body(400, "invalid_request_error", "the body must be JSON with a string 'model'")
        requested = payload["model"]
        slot = self.catalog.slot_for_model(requested)
        if slot is None:
            self.metrics.reject("invalid_model", 400)
            return error_body(400, "invalid_model",
                              f"unknown model '{requested}'; ask for a slot: {', '.join(self.catalog.slots)}")
        state, health = self.state.get(), self.health.get()
        rotation = Rotation(dict(self.turns), dict(self.sticky_keys), self.load.busy(state, health, time.time()))
        decision = await self.complexity.decide(slot, state, payload, client.owner)
        resolution = resolve(requested, state, health, env=self.key_names, now=time.time(),
                             scope=client.scope, catalog=self.catalog, rotation=rotation,
                             p_strong=decision.p_strong if decision else None, speeds=self.speeds.get())
        limits = client.limits(state.access)
        if not resolution.allowed or not all(access.allows(resolution.slot) for _, access in limits):
            self.metrics.reject("slot_not_allowed", 403)
            return error_body(403, "permission_error", resolution.reason or
                              f"slot '{resolution.slot}' is not allowed by this token's own access limits")
        limited = path != COUNT_TOKENS and self.rates.check([(owner, a.rpm, a.tpm) for owner, a in limits], time.time())
        if limited:
            self.metrics.reject("rate_limited", 429)
            return error_body(429, "rate_limit_error", limited)
        self._advance_turns(resolution, state)
        trace = self.traffic.begin(client.owner, resolution.slot, requested, resolution.generation)
        trace.tier, trace.p_strong, trace.stream = resolution.tier, resolution.p_strong, bool(payload.get("stream"))
        if decision is not None:
            trace.prompt_complexity, trace.temperature = decision.prompt_complexity, decision.temperature
        response = await self._forward(request, path, payload, resolution, state, client, started, trace)
        if decision is not None and resolution.tier:
            response.headers.update(decision.headers(resolution.tier))
        return response

    async def _read_body(self, request: Request) -> bytes | Response:
        limit = self.record.body_limit_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            self.metrics.reject("too_large", 413)
            return error_body(413, "request_too_large", f"request body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                self.metrics.reject("too_large", 413)
                return error_body(413, "request_too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _advance_turns(self, resolution: Resolution, state: State) -> None:
        """Round-robin policies move one step per request."""
        policy = state.model_policy.get(resolution.slot)
        if policy and policy.mode == "round_robin":
            self.turns[f"slot:{resolution.slot}"] += 1
        for provider in {c.provider for c in resolution.candidates}:
            key_policy = state.key_policy.get(provider)
            if key_policy and key_policy.mode == "round_robin":
                self.turns[f"provider:{provider}"] += 1

    async def _forward(self, request: Request, path: str, payload: dict, resolution: Resolution,
                       state: State, client: Client, started: float, trace: Trace) -> Response:
        """Try the resolver's attempts in turn (those the running LiteLLM knows), with the state the
        request was resolved against; a local model's failing replica is passed over for its twins."""
        plan = [c for c in resolution.attempts if c.deployment in self.deployments]
        base_headers = {"x-broke-slot": resolution.slot, "x-broke-generation": str(resolution.generation)}
        if not plan:
            reason = resolution.reason or "no candidate is loaded in the running gateway; run `broke restart`"
            self.metrics.reject("no_backend", 503)
            response = error_body(503, "no_backend", f"slot '{resolution.slot}': {reason}")
            response.headers.update({**base_headers, "x-broke-attempts": "0"})
            trace.status, trace.error = 503, reason
            self.traffic.publish(trace, started)
            return response
        self._overflowed(resolution, plan[0])
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        headers["accept-encoding"] = "identity"  # loopback: compression only costs time
        headers["content-type"] = "application/json"  # the body is re-encoded JSON, whatever was sent
        health = self.health.get()
        last: tuple[int, bytes, dict[str, str]] = (502, b"", {})
        attempt = 0
        down: set[str] = set()  # backends that failed as a whole during this request
        failed_workers: set[str] = set()  # local replicas that failed during this request
        self.metrics.in_flight += 1
        try:
            for candidate in plan:
                while candidate.backend not in down:
                    worker = self._worker_for(path, candidate, health, failed_workers)
                    if worker is False:  # every replica failed during this request
                        break
                    attempt += 1
                    via, url, body, send_headers, names = self._target(path, payload, candidate, headers, worker,
                                                                        state)
                    if via == "litellm":
                        why = await self._litellm_ready()
                        if why:
                            last = (503, orjson.dumps({"error": {"message": why, "type": "litellm_unavailable"}}), {})
                            break
                    lease = self.load.acquire(candidate.backend, worker) if candidate.provider == "mlx" else None
                    upstream, failure = await self._send(url, body, send_headers)
                    if upstream is not None:
                        answer_headers = {**self._response_headers(upstream), **base_headers,
                                          "x-broke-backend": candidate.backend, "x-broke-attempts": str(attempt),
                                          "x-broke-via": via}
                        self._succeeded(candidate)
                        trace.backend, trace.attempts = candidate.backend, attempt
                        trace.key_ref = self.record.key_refs.get(candidate.key_env or "")
                        stamp = ModelStamp(names, payload["model"])
                        return await self._relay(upstream, answer_headers, resolution.slot, candidate, client,
                                                 started, lease, stamp, trace, spends=path != COUNT_TOKENS)
                    if lease:
                        self.load.release(lease)
                    last = failure.answer
                    if worker:  # one replica failed: it sits out, and a twin that has not failed goes next
                        failed_workers.add(worker)
                        await self._worker_failed(resolution.slot, candidate, worker, failure)
                        if any(u not in failed_workers for u in self.load.pools[candidate.backend]):
                            continue
                    if failure.reason not in (events.RATE_LIMIT, events.AUTH):
                        down.add(candidate.backend)
                    await self._failed(state, resolution.slot, candidate, failure.reason, failure.status)
                    break
        finally:
            self.metrics.in_flight -= 1
        status, error, error_headers = last
        self.metrics.answered(resolution.slot, "-", status, time.perf_counter() - started)
        trace.status, trace.attempts = status, attempt
        trace.error = f"every candidate failed ({attempt} attempts); the last answered {status}"
        self.traffic.publish(trace, started)
        return Response(error, status_code=status, headers={**error_headers, **base_headers,
                                                            "x-broke-attempts": str(attempt)},
                        media_type="application/json")

    async def _send(self, url: str, body: bytes,
                    headers: dict[str, str]) -> tuple[aiohttp.ClientResponse | None, Failure | None]:
        """One attempt: (the upstream's answer, None), or (None, why it failed before the first byte)."""
        try:
            async with asyncio.timeout(self.record.first_byte_timeout_s):
                upstream = await self.session.post(url, data=body, headers=headers)
        except TimeoutError:
            return None, Failure(events.TIMEOUT, None, (
                504, b'{"error":{"message":"upstream timed out before the first byte"}}', {}))
        except aiohttp.ClientError as exc:
            message = {"error": {"message": f"upstream unreachable: {type(exc).__name__}"}}
            return None, Failure(events.ERROR, None, (502, orjson.dumps(message), {}))
        if upstream.status in RETRYABLE:
            error = await upstream.read()
            upstream.release()
            return None, Failure(self._reason(upstream.status), upstream.status,
                                 (upstream.status, error, self._response_headers(upstream)))
        return upstream, None

    def _worker_for(self, path: str, candidate: Candidate, health: Health,
                    failed: set[str]) -> str | None | bool:
        """The local worker a chat completion goes to directly (None: through LiteLLM; False: none left)."""
        if path != "/v1/chat/completions" or candidate.backend not in self.load.pools:
            return None
        url = self.load.pick(candidate.backend, health, time.time(), failed)
        return url if url is not None else False

    def _target(self, path: str, payload: dict, candidate: Candidate, headers: dict[str, str],
                worker: str | None, state: State) -> tuple[str, str, bytes, dict[str, str], tuple[str, ...]]:
        """Where one attempt goes, as (via, url, body, headers, names); via is "native" or "litellm",
        names what the answer may call the model: the name sent, and the provider's own.

        Native: the client's API is the backend's own (chat completions to a local worker or an
        OpenAI-compatible server, messages to Anthropic, responses to OpenAI), so the request goes
        there unchanged but for its model name, with the key this attempt chose. Otherwise LiteLLM
        translates.
        """
        direct = {k: v for k, v in headers.items() if k != "authorization"}
        backend = find_backend(candidate.backend, state, self.catalog)
        own = (backend.model,) if backend else ()
        if worker:
            body = {**self._payload_for(payload, candidate), "model": DIRECT_WORKER_MODEL}
            token = self.keys.get(self.record.worker_tokens.get(worker, ""))
            if token:  # a node on another machine, behind its token check
                direct = {**direct, "authorization": f"Bearer {token}"}
            return "native", f"{worker}/chat/completions", encode(body), direct, (DIRECT_WORKER_MODEL, *own)
        native = backend is not None and self.record.native_forwarding
        provider = self.catalog.providers.get(candidate.provider) if native else None
        route = native_route(path, backend, provider) if backend and provider else None
        if route is not None:
            body = {**self._payload_for(payload, candidate), "model": route.model}
            key = self.keys.get(candidate.key_env or "")
            return "native", route.url, encode(body), auth_headers(route, key, direct), (route.model, *own)
        return ("litellm", self.upstream_url + path, encode(self._payload_for(payload, candidate)),
                {**headers, "authorization": f"Bearer {self.master_key}"}, (candidate.deployment, *own))

    def _payload_for(self, payload: dict, candidate: Candidate) -> dict:
        """The body for one attempt: the deployment's name, and token limits a local worker can serve."""
        body = {**payload, "model": candidate.deployment}
        if candidate.provider == "mlx":
            for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                if field in body and body[field] is None:
                    del body[field]  # mlx_lm.server refuses null
                elif isinstance(body.get(field), int) and body[field] > self.record.local_max_tokens:
                    body[field] = self.record.local_max_tokens
        return body

    @staticmethod
    def _response_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
        return {k: v for k, v in upstream.headers.items()
                if k.lower() not in DROPPED_RESPONSE_HEADERS
                and not k.lower().startswith(("x-litellm", "llm_provider-"))}

    async def _relay(self, upstream: aiohttp.ClientResponse, headers: dict[str, str], slot: str,
                     candidate: Candidate, client: Client, started: float, lease: Lease | None,
                     stamp: ModelStamp, trace: Trace, *, spends: bool = True) -> Response:
        """Pass the answer through, naming the model the client asked for: small JSON at once, event
        streams chunk by chunk; a local model's `lease` is held until the answer has been read.

        The tokens an answer reports count against the client's limit unless it only counted them.
        """
        if "text/event-stream" not in upstream.headers.get("content-type", ""):
            try:
                content = stamp.whole(await upstream.read())
            finally:
                upstream.release()
                if lease:
                    self.load.release(lease)
            trace.status, trace.tokens = upstream.status, usage_tokens(content) or None
            if spends:
                self._spent(client, trace.tokens or 0)
            self.metrics.answered(slot, candidate.backend, upstream.status, time.perf_counter() - started)
            self.traffic.publish(trace, started)
            return Response(content, status_code=upstream.status, headers=headers)

        self.metrics.in_flight += 1  # until the stream ends, not until its headers are sent

        async def stream():
            tail = b""
            try:
                async for chunk in upstream.content.iter_any():
                    tail = (tail + chunk)[-4096:]
                    lines = stamp.feed(chunk)
                    if lines:
                        yield lines
                rest = stamp.flush()
                if rest:
                    yield rest
            finally:
                upstream.close()  # a client that left mid-stream cancels the upstream request
                self.metrics.in_flight -= 1
                if lease:
                    self.load.release(lease)
                trace.status, trace.tokens = upstream.status, usage_tokens(tail) or None
                self._spent(client, trace.tokens or 0)
                self.metrics.answered(slot, candidate.backend, upstream.status, time.perf_counter() - started)
                self.traffic.publish(trace, started)

        return StreamingResponse(stream(), status_code=upstream.status, headers=headers)

    def _spent(self, client: Client, tokens: int) -> None:
        """Tokens an answer used, counted for every owner whose limits the request was held to."""
        for owner, _ in client.limits(self.state.get().access):
            self.rates.spent(owner, tokens, time.time())

    # ---- health bookkeeping -----------------------------------------------------------------------
    @staticmethod
    def _reason(status: int) -> str:
        if status == 429:
            return events.RATE_LIMIT
        if status in (401, 403):
            return events.AUTH
        if status == 408:
            return events.TIMEOUT
        return events.ERROR

    async def _failed(self, state: State, slot: str, candidate: Candidate, reason: str,
                      status: int | None) -> None:
        """Record a failed attempt: the key (429, auth) or the backend (errors, timeouts) sits out a while."""
        self.metrics.failed_over(slot, candidate.backend, reason)
        now = time.time()
        key_ref = self.record.key_refs.get(candidate.key_env or "", None)
        if reason in (events.RATE_LIMIT, events.AUTH) and candidate.key_env:
            policy = state.key_policy.get(candidate.provider)
            if reason == events.RATE_LIMIT:
                status_name, until = "cooldown", now + (policy.cooldown_s if policy else 60)
            else:
                status_name, until = "auth_failed", now + AUTH_RETRY_S
            await asyncio.to_thread(self.health_store.set, "keys", candidate.key_env, status_name,
                                    until=until, reason=reason, count_failure=True)
            if self.sticky_keys.get(candidate.provider) == candidate.key_env:
                del self.sticky_keys[candidate.provider]
        else:
            await asyncio.to_thread(self.health_store.set, "models", candidate.backend, "cooldown",
                                    until=now + BACKEND_COOLDOWN_S, reason=reason, count_failure=True)
        self.event_log.write(event="failover", slot=slot, provider=candidate.provider,
                             backend=candidate.backend, key_ref=key_ref, reason=reason, status=status)
        log.warning("slot %s: %s failed (%s); trying the next candidate", slot, candidate.deployment, reason)

    async def _worker_failed(self, slot: str, candidate: Candidate, worker: str, failure: Failure) -> None:
        """One replica of a local model failed: it sits out (until its supervisor says it is back)."""
        name = worker_key(candidate.backend, worker)
        self.metrics.failed_over(slot, candidate.backend, failure.reason)
        await asyncio.to_thread(self.health_store.set, "workers", name, "cooldown",
                                until=time.time() + BACKEND_COOLDOWN_S, reason=failure.reason, count_failure=True)
        self.event_log.write(event="failover", slot=slot, provider=candidate.provider, backend=candidate.backend,
                             worker=name, reason=failure.reason, status=failure.status)
        log.warning("slot %s: worker %s failed (%s); trying another", slot, name, failure.reason)

    def _overflowed(self, resolution: Resolution, first: Candidate) -> None:
        """Busy local models that a request passes over for a later candidate: counted and logged."""
        if first.busy:
            return
        for candidate in resolution.candidates:
            if candidate.deployment == first.deployment:
                return
            if candidate.busy:
                self.metrics.failed_over(resolution.slot, candidate.backend, events.BUSY)
                self.event_log.write(event="overflow", slot=resolution.slot, provider=candidate.provider,
                                     backend=candidate.backend, reason=events.BUSY, status=None)

    def _succeeded(self, candidate: Candidate) -> None:
        """A candidate answered: sticky key policies keep using its key."""
        if candidate.key_env:
            self.sticky_keys[candidate.provider] = candidate.key_env
