"""The front proxy: client auth, model -> slot -> resolver, forward to LiteLLM, fail over before the first byte."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from pathlib import Path

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
from broke.gateway.wire import encode, error_body, usage_tokens
from broke.gateway.live import Watched, watched_speeds
from broke.gateway.metrics import Metrics
from broke.gateway.traffic import Trace, Traffic
from broke.gateway.runfiles import GatewayRecord
from broke.gateway.ui import Dashboard
from broke.health import Health, HealthStore, load_health
from broke.resolver import Candidate, Resolution, Rotation, resolve
from broke.state.model import Access, State
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
                            "trailer", "upgrade", "server", "date"}
#: The model name mlx_lm.server answers to (any other makes it look on the hub).
DIRECT_WORKER_MODEL = "default_model"
class FrontProxy:
    def __init__(self, home: Path, record: GatewayRecord, master_key: str) -> None:
        self.home, self.record, self.master_key = home, record, master_key
        self.catalog = load_catalog()
        self.key_names = {name: "set" for name in record.key_refs}
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
        self.sticky_keys: dict[str, str] = {}
        self.upstream_url = f"http://127.0.0.1:{record.litellm.port}"
        self.session: aiohttp.ClientSession | None = None  # made in the server's event loop

    # ---- the ASGI app ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
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

    # ---- plain endpoints ------------------------------------------------------------------------
    @staticmethod
    def _loopback(request: Request) -> bool:
        host = request.client.host if request.client else ""
        return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")

    async def health_check(self, request: Request) -> Response:
        if not self._loopback(request):
            return error_body(403, "forbidden", "/health answers loopback clients only")
        try:
            async with asyncio.timeout(5.0):
                async with self.session.get(self.upstream_url + "/health/liveliness") as answer:
                    litellm_ok = answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            litellm_ok = False
        body = {"status": "ok" if litellm_ok else "degraded", "litellm": litellm_ok,
                "generation": self.state.get().generation}
        return JSONResponse(body, status_code=200 if litellm_ok else 503)

    async def metrics_text(self, request: Request) -> Response:
        if not self._loopback(request):
            return error_body(403, "forbidden", "/metrics answers loopback clients only")
        return PlainTextResponse(self.metrics.render(self.state.get().generation),
                                 media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        client = self._authenticate(request)
        if isinstance(client, Response):
            return client
        access = self._access(client, self.state.get())
        slots = [s for s in self.catalog.slots if access.allows(s)]
        return JSONResponse({"object": "list", "data": [
            {"id": slot, "object": "model", "created": 0, "owned_by": "broke"} for slot in slots]})

    # ---- auth and limits ------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> Client | Response:
        verdict = self.auth.check(request)
        if isinstance(verdict, Refusal):
            self.metrics.reject(verdict.metric, verdict.status)
            return error_body(verdict.status, verdict.code, verdict.message)
        return verdict

    @staticmethod
    def _access(client: Client, state: State) -> Access:
        return client.scope.access if client.scope else state.access

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
        rotation = Rotation(dict(self.turns), dict(self.sticky_keys))
        decision = await self.complexity.decide(slot, state, payload, client.owner)
        resolution = resolve(requested, state, health, env=self.key_names, now=time.time(),
                             scope=client.scope, catalog=self.catalog, rotation=rotation,
                             p_strong=decision.p_strong if decision else None, speeds=self.speeds.get())
        if not resolution.allowed:
            self.metrics.reject("slot_not_allowed", 403)
            return error_body(403, "permission_error", resolution.reason)
        access = self._access(client, state)
        limited = self.rates.check(client.owner, access.rpm, access.tpm, time.time())
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

    def _attempts_plan(self, resolution: Resolution, state: State) -> list[Candidate]:
        """Usable candidates the running LiteLLM knows, at most `retries + 1` keys per backend.

        When health has benched every candidate, the benched ones are tried anyway (in order): a
        cooldown is advice about what to try first, never the reason a request fails.
        """
        loaded = [c for c in resolution.candidates if c.deployment in self.deployments]
        chosen = [c for c in loaded if c.usable] or [c for c in loaded if c.benched_by_health]
        plan, per_backend = [], Counter()
        for candidate in chosen:
            policy = state.key_policy.get(candidate.provider)
            if policy and per_backend[candidate.backend] > policy.retries:
                continue
            per_backend[candidate.backend] += 1
            plan.append(candidate)
        return plan

    async def _forward(self, request: Request, path: str, payload: dict, resolution: Resolution,
                       state: State, client: Client, started: float, trace: Trace) -> Response:
        """Try the plan's candidates in turn, with the state the request was resolved against."""
        plan = self._attempts_plan(resolution, state)
        base_headers = {"x-broke-slot": resolution.slot, "x-broke-generation": str(resolution.generation)}
        if not plan:
            reason = resolution.reason or "no candidate is loaded in the running gateway; run `broke restart`"
            self.metrics.reject("no_backend", 503)
            response = error_body(503, "no_backend", f"slot '{resolution.slot}': {reason}")
            response.headers.update({**base_headers, "x-broke-attempts": "0"})
            trace.status, trace.error = 503, reason
            self.traffic.publish(trace, started)
            return response
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        headers["authorization"] = f"Bearer {self.master_key}"
        headers["accept-encoding"] = "identity"  # loopback: compression only costs time
        headers["content-type"] = "application/json"  # the body is re-encoded JSON, whatever was sent
        last: tuple[int, bytes, dict[str, str]] = (502, b"", {})
        attempt = 0
        down: set[str] = set()  # backends that failed as a whole during this request
        self.metrics.in_flight += 1
        try:
            for candidate in plan:
                if candidate.backend in down:
                    continue
                attempt += 1
                url, body, send_headers = self._target(path, payload, candidate, headers)
                try:
                    async with asyncio.timeout(self.record.first_byte_timeout_s):
                        upstream = await self.session.post(url, data=body, headers=send_headers)
                except TimeoutError:
                    down.add(candidate.backend)
                    await self._failed(state, resolution.slot, candidate, events.TIMEOUT, None)
                    last = (504, b'{"error":{"message":"upstream timed out before the first byte"}}', {})
                    continue
                except aiohttp.ClientError as exc:
                    down.add(candidate.backend)
                    await self._failed(state, resolution.slot, candidate, events.ERROR, None)
                    message = {"error": {"message": f"upstream unreachable: {type(exc).__name__}"}}
                    last = (502, orjson.dumps(message), {})
                    continue
                if upstream.status in RETRYABLE:
                    error = await upstream.read()
                    upstream.release()
                    reason = self._reason(upstream.status)
                    if reason not in (events.RATE_LIMIT, events.AUTH):
                        down.add(candidate.backend)
                    await self._failed(state, resolution.slot, candidate, reason, upstream.status)
                    last = (upstream.status, error, self._response_headers(upstream))
                    continue
                answer_headers = {**self._response_headers(upstream), **base_headers,
                                  "x-broke-backend": candidate.backend, "x-broke-attempts": str(attempt)}
                self._succeeded(candidate)
                trace.backend, trace.attempts = candidate.backend, attempt
                trace.key_ref = self.record.key_refs.get(candidate.key_env or "")
                return await self._relay(upstream, answer_headers, resolution.slot, candidate, client, started,
                                         trace)
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

    def _target(self, path: str, payload: dict, candidate: Candidate,
                headers: dict[str, str]) -> tuple[str, bytes, dict[str, str]]:
        """Where one attempt goes: LiteLLM, or for chat completions a local worker directly.

        A worker speaks chat completions natively, and LiteLLM's hop costs more time to first token
        than the tiny models take; other APIs need LiteLLM's translation. Workers of one model are
        taken in turn.
        """
        workers = self.record.direct_workers.get(candidate.backend) if path == "/v1/chat/completions" else None
        if not workers:
            return self.upstream_url + path, encode(self._payload_for(payload, candidate)), headers
        turn = self.turns[f"pool:{candidate.backend}"]
        self.turns[f"pool:{candidate.backend}"] += 1
        body = {**self._payload_for(payload, candidate), "model": DIRECT_WORKER_MODEL}
        direct_headers = {k: v for k, v in headers.items() if k != "authorization"}
        return f"{workers[turn % len(workers)]}/chat/completions", encode(body), direct_headers

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
                     candidate: Candidate, client: Client, started: float, trace: Trace) -> Response:
        """Pass the answer through: small JSON at once, event streams chunk by chunk."""
        if "text/event-stream" not in upstream.headers.get("content-type", ""):
            try:
                content = await upstream.read()
            finally:
                upstream.release()
            trace.status, trace.tokens = upstream.status, usage_tokens(content) or None
            self.rates.spent(client.owner, trace.tokens or 0, time.time())
            self.metrics.answered(slot, candidate.backend, upstream.status, time.perf_counter() - started)
            self.traffic.publish(trace, started)
            return Response(content, status_code=upstream.status, headers=headers)

        self.metrics.in_flight += 1  # until the stream ends, not until its headers are sent

        async def stream():
            tail = b""
            try:
                async for chunk in upstream.content.iter_any():
                    tail = (tail + chunk)[-4096:]
                    yield chunk
            finally:
                upstream.close()  # a client that left mid-stream cancels the upstream request
                self.metrics.in_flight -= 1
                trace.status, trace.tokens = upstream.status, usage_tokens(tail) or None
                self.rates.spent(client.owner, trace.tokens or 0, time.time())
                self.metrics.answered(slot, candidate.backend, upstream.status, time.perf_counter() - started)
                self.traffic.publish(trace, started)

        return StreamingResponse(stream(), status_code=upstream.status, headers=headers)

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

    def _succeeded(self, candidate: Candidate) -> None:
        """A candidate answered: sticky key policies keep using its key."""
        if candidate.key_env:
            self.sticky_keys[candidate.provider] = candidate.key_env
