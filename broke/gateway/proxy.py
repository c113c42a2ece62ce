"""The front proxy: the app and its endpoints, client auth and admission (body, model, slot, access,
rate), the resolution of each request; the attempt loop (forward.py) carries it out."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from broke.catalog import load_catalog
from broke.control.runfiles import GatewayRecord
from broke.cost.book import CostBook, cost_header
from broke.cost.prices import request_cost, request_tokens
from broke.gateway.admin import AdminAPI
from broke.gateway.auth import Authenticator, Client, Refusal, is_loopback
from broke.gateway.codex_models import CODEX_QUERY, codex_catalog
from broke.gateway.complexity import RouterModel, decision_headers
from broke.gateway.dashboard.app import Dashboard, LiveView
from broke.gateway.dashboard.sessions import host_allowed
from broke.gateway.forward import Forwarder
from broke.gateway.gemini import GeminiAPI
from broke.gateway.judged import Judge
from broke.gateway.limits import RateLimiter, header_problem
from broke.gateway.litellm import LiteLLM
from broke.gateway.live import Watched, watched_speeds
from broke.gateway.load import WorkerLoad
from broke.gateway.metrics import Metrics
from broke.gateway.outcomes import Recorder, Refused
from broke.gateway.routed import OutcomeLog, take_feedback
from broke.gateway.traffic import Traffic, new_request_id
from broke.gateway.watch import WorkerWatch
from broke.gateway.wire import error_body
from broke.harness.requests import RunRequests
from broke.health import Health, HealthTransitions, load_health
from broke.routing.backends import routes_by_complexity
from broke.routing.conversation import user_turns
from broke.routing.resolve import Conversation, resolve, tier_index
from broke.routing.rotation import RotationState
from broke.routing.transport import COUNT_TOKENS, COUNTING
from broke.shared import Shared, redis_url
from broke.state.model import State
from broke.state.store import StateStore, default_state


class FrontProxy:
    def __init__(self, home: Path, record: GatewayRecord, master_key: str) -> None:
        self.home, self.record = home, record
        self.catalog = load_catalog()
        self.key_names = dict.fromkeys(record.key_refs, "set")
        #: provider keys for native forwarding (from this process's environment, set by `broke start`)
        keys = {name: os.environ[name] for name in record.key_refs if name in os.environ}
        store = StateStore(home)
        self.state: Watched[State] = Watched(store.path, store.load, default_state)
        health_path = home / "health.json"
        # A corrupt health.json never takes requests down: the last good view (or none) serves,
        # and the next health write replaces the file (the corrupt one is kept aside).
        self.health: Watched[Health] = Watched(health_path, lambda: load_health(health_path), Health, Health)
        self.speeds = watched_speeds(home)
        self.auth = Authenticator(home)
        self.router_model = RouterModel(home)
        self.metrics = Metrics()
        self.traffic = Traffic()
        self.rates = RateLimiter()
        self.shared = Shared(redis_url(home), self.rates)  # cooldowns, rate windows, spend shared with others
        self.pending: set[asyncio.Task[None]] = set()  # shared token counts being written
        self.rotation = RotationState()
        self.load = WorkerLoad(record.direct_workers)
        self.watch = WorkerWatch(home, self.load, self.state)
        self.litellm = LiteLLM(home, record)
        transitions = HealthTransitions(home, self.health.last_good)
        self.costs = CostBook(home, self.catalog, self.state.get, self.shared)
        self.routed = OutcomeLog(home, self.router_model.loaded)
        self.runs = RunRequests(home)
        self.recorder = Recorder(self.metrics, self.traffic, transitions, self.rotation, self.costs, self.routed,
                                 self.runs, self.shared)
        self.forwarder = Forwarder(record, self.catalog, keys, master_key, self.load, self.litellm, self.recorder,
                                   self.metrics, self.rotation)
        self.judge = Judge(home, self.catalog, self.costs, self.traffic, self.forwarder.forward, self.key_names,
                           self.router_model.refit_soon)

    # ---- the ASGI app ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        view = LiveView(self.home, self.auth, self.traffic, self.metrics, self.state, self.health,
                        self.record.key_refs)
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route(COUNT_TOKENS, self.count_tokens, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/broke/feedback", self.feedback, methods=["POST"]),
            Route("/health", self.health_check, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
            *Dashboard(view).routes(),
            *AdminAPI(view).routes(),
            *GeminiAPI(self.catalog, self.handle, self._allowed_slots).routes(),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan, middleware=[Middleware(self._HeaderLimit, proxy=self)])

    class _HeaderLimit:
        """431 for a request with too many or too large headers, before any endpoint reads it."""

        def __init__(self, app: ASGIApp, proxy: FrontProxy) -> None:
            self.app, self.proxy = app, proxy

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            problem = header_problem(scope["headers"]) if scope["type"] == "http" else ""
            if not problem:
                await self.app(scope, receive, send)
                return
            await self.proxy.recorder.record(Refused("headers_too_large", 431))
            await error_body(431, "request_header_fields_too_large", problem)(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # aiohttp, not httpx, for upstream hops: about half the CPU per request. Bytes pass through
        # as they come (no decompression), and no cookies are kept between clients.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        )
        self.forwarder.session = session
        self.litellm.bind(session)
        router = self.state.get().router
        if router.tiers or router.record.slots:  # `auto` is routed by complexity, or prompts are recorded
            self.router_model.warm_up()
        watching = await self.watch.start()  # brings back dead workers, follows the replicas there are
        try:
            yield
        finally:
            watching.cancel()
            await session.close()
            await self.shared.close()
            self.costs.close()
            await asyncio.to_thread(self.routed.close)
            await asyncio.to_thread(self.runs.close)

    async def chat(self, request: Request) -> Response:
        return await self.handle(request, "/v1/chat/completions")

    async def messages(self, request: Request) -> Response:
        return await self.handle(request, "/v1/messages")

    async def responses(self, request: Request) -> Response:
        return await self.handle(request, "/v1/responses")

    async def count_tokens(self, request: Request) -> Response:
        return await self.handle(request, COUNT_TOKENS)

    # ---- plain endpoints ------------------------------------------------------------------------
    async def health_check(self, request: Request) -> Response:
        if not is_loopback(request) or not host_allowed(request.headers.get("host", "")):
            return error_body(403, "forbidden", "/health answers loopback clients (and loopback Host names) only")
        litellm = await self.litellm.state()
        body = {"status": "ok" if litellm != "down" else "degraded", "litellm": litellm,
                "generation": self.state.get().generation, "shared": self.shared.status()}
        return JSONResponse(body, status_code=200 if litellm != "down" else 503)

    async def metrics_text(self, request: Request) -> Response:
        if not is_loopback(request) or not host_allowed(request.headers.get("host", "")):
            return error_body(403, "forbidden", "/metrics answers loopback clients (and loopback Host names) only")
        return PlainTextResponse(self.metrics.render(self.state.get().generation),
                                 media_type="text/plain; version=0.0.4")

    async def _allowed_slots(self, request: Request) -> list[str] | Response:
        """The slots a request's token may use, or its refusal."""
        client = await self._authenticate(request)
        if isinstance(client, Response):
            return client
        limits = client.limits(self.state.get().access)
        return [s for s in self.catalog.slots if all(access.allows(s) for _, access in limits)]

    async def models(self, request: Request) -> Response:
        slots = await self._allowed_slots(request)
        if isinstance(slots, Response):
            return slots
        if CODEX_QUERY in request.query_params:  # Codex's discovery: its own catalog shape
            return JSONResponse(codex_catalog(self.catalog, slots))
        return JSONResponse({"object": "list", "data": [
            {"id": slot, "object": "model", "created": 0, "owned_by": "broke"} for slot in slots]})

    async def feedback(self, request: Request) -> Response:
        """good|bad on one of this client's `auto` requests (routed.take_feedback)."""
        client = await self._authenticate(request)
        if isinstance(client, Response):
            return client
        return await take_feedback(request, self.home, client.owner, self.routed, self.router_model)

    # ---- admission ------------------------------------------------------------------------------
    async def _rate_limited(self, limits: list[tuple[str, int, int]], now: float) -> str:
        """Why the request is over a rate limit, or "": in the windows shared through Redis, or (no
        Redis, or none reachable now) in this gateway's own."""
        if not any(rpm or tpm for _, rpm, tpm in limits):
            return ""
        shared = await self.shared.admit(limits, now) if self.shared.url else None
        return self.rates.check(limits, now) if shared is None else shared

    async def _refuse(self, metric: str, status: int, code: str, message: str) -> Response:
        await self.recorder.record(Refused(metric, status))
        return error_body(status, code, message)

    async def _authenticate(self, request: Request) -> Client | Response:
        verdict = self.auth.check(request)
        if isinstance(verdict, Refusal):
            return await self._refuse(verdict.metric, verdict.status, verdict.code, verdict.message)
        return verdict

    async def _read_body(self, request: Request) -> bytes | Response:
        limit = self.record.body_limit_bytes
        declared = request.headers.get("content-length")
        too_large = f"request body over {limit} bytes"
        if declared and declared.isdigit() and int(declared) > limit:
            return await self._refuse("too_large", 413, "request_too_large", too_large)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return await self._refuse("too_large", 413, "request_too_large", too_large)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _conversation(self, slot: str, state: State, payload: dict[str, Any],
                            owner: str) -> tuple[Conversation | None, Any]:
        """For a slot routed by complexity with tiers: the conversation and the model that estimates it."""
        if not routes_by_complexity(slot, state) or not state.router.tiers:
            return None, None
        turns = user_turns(payload)
        if not turns:
            return None, None
        return Conversation(tuple(turns), owner), await self.router_model.get()

    # ---- routing --------------------------------------------------------------------------------
    async def handle(self, request: Request, path: str, fields: dict[str, Any] | None = None) -> Response:
        """Answer one model request; every answer, refusals included, carries `x-broke-request-id`.
        `fields` are set in its body (Google's API names the model in the URL)."""
        request_id = new_request_id()
        response = await self._handle(request, path, request_id, fields or {})
        response.headers["x-broke-request-id"] = request_id
        if not isinstance(response, StreamingResponse):  # a stream is priced when it ends (its trace, the ledger)
            response.headers.setdefault("x-broke-cost-usd", cost_header(0.0, answered=False))
        return response

    async def _handle(self, request: Request, path: str, request_id: str, fields: dict[str, Any]) -> Response:
        started = time.perf_counter()
        client = await self._authenticate(request)
        if isinstance(client, Response):
            return client
        body = await self._read_body(request)
        if isinstance(body, Response):
            return body
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and fields:
            payload = {**payload, **fields}
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            return await self._refuse("bad_request", 400, "invalid_request_error",
                                      "the body must be JSON with a string 'model'")
        requested = payload["model"]
        slot = self.catalog.slot_for_model(requested)
        if slot is None:
            return await self._refuse("invalid_model", 400, "invalid_model",
                                      f"unknown model '{requested}'; ask for a slot: {', '.join(self.catalog.slots)}")
        state, now = self.state.get(), time.time()
        self.watch.follow(state)  # nodes added or removed since the last request
        health = await self.shared.overlay(self.health.get(), self.record.key_refs, now)
        conversation, estimator = await self._conversation(slot, state, payload, client.owner)
        rotation = self.rotation.view(self.load.busy(state, health, now), conversation.key if conversation else None)
        resolution = resolve(requested, state, health, env=self.key_names, now=now, scope=client.scope,
                             catalog=self.catalog, rotation=rotation, conversation=conversation,
                             estimator=estimator, speeds=self.speeds.get(),
                             cost=request_cost(state, self.catalog, request_tokens(len(body), payload)))
        if conversation is not None and resolution.tier:
            self.rotation.reached(conversation.key, tier_index(resolution.tier))
        limits = client.limits(state.access)
        if not resolution.allowed or not all(access.allows(resolution.slot) for _, access in limits):
            return await self._refuse("slot_not_allowed", 403, "permission_error", resolution.reason or
                                      f"slot '{resolution.slot}' is not allowed by this token's own access limits")
        limited = path not in COUNTING and await self._rate_limited([(owner, a.rpm, a.tpm) for owner, a in limits], now)
        if limited:
            return await self._refuse("rate_limited", 429, "rate_limit_error", limited)
        admission = await self.costs.admit(client.owner, (client.budget, client.on_budget), resolution.attempts,
                                           state, self.record.key_refs, now)
        if admission.refusal:
            refused = await self._refuse("over_budget", 429, "rate_limit_error", admission.refusal)
            if admission.resets_at is not None:
                refused.headers["retry-after"] = str(max(int(admission.resets_at - now), 1))
            return refused
        if admission.attempts is not resolution.attempts:  # a budget left some out
            resolution = dataclasses.replace(resolution, attempts=admission.attempts)
        self.rotation.advance(resolution.slot, (c.provider for c in resolution.candidates), state)
        trace = self.traffic.begin(client.owner, resolution.slot, requested, resolution.generation, request_id)
        trace.tier, trace.p_strong, trace.stream = resolution.tier, resolution.p_strong, bool(payload.get("stream"))
        self.routed.decided(request_id, resolution.slot, resolution.estimate, state.router.record,
                            lambda: conversation.turns if conversation else user_turns(payload), path in COUNTING)
        headers = decision_headers(resolution)
        if admission.warning:
            headers["x-broke-budget-warning"] = admission.warning
        if resolution.estimate is not None:
            trace.prompt_complexity = resolution.estimate.prompt_complexity
            trace.temperature = headers.get("x-broke-quality-temperature", "")

        def spend(tokens: int) -> None:
            """Tokens an answer used, counted for every owner whose limits the request was held to."""
            for owner, _ in client.limits(self.state.get().access):
                self.rates.spent(owner, tokens, time.time())
                if self.shared.url and tokens > 0:
                    task = asyncio.get_running_loop().create_task(self.shared.spent(owner, tokens, time.time()))
                    self.pending.add(task)
                    task.add_done_callback(self.pending.discard)

        response = await self.forwarder.forward(request, path, payload, resolution, state, health, started, trace,
                                                spend)
        response.headers.update(headers)
        self.judge.after(response, request_id, path, payload, resolution, state, health)
        return response
