"""The attempt loop: a resolution's attempts tried in turn, each sent the way `route_for` says,
failing over while nothing has reached the client (before the first byte, or a non-streamed body that
broke or is not JSON); a local model's failing replica is passed over for its twins. Errors passed to
the client are scrubbed of secrets (scrub.py)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broke.catalog import Catalog
from broke.control.runfiles import GatewayRecord
from broke.cost.usage import UsageMeter, asks_stream_usage, with_stream_usage
from broke.errors import InvalidInputError
from broke.gateway.litellm import LiteLLM
from broke.gateway.load import WorkerLoad, replica_name, worker_key
from broke.gateway.metrics import Metrics
from broke.gateway.outcomes import Answered, AttemptFailed, Failure, PassedOver, Recorder, Succeeded, Unrouted
from broke.gateway.relay import Relay, is_stream, response_headers
from broke.gateway.scrub import Scrubber
from broke.gateway.traffic import Trace
from broke.gateway.translate import Translation, count_estimate
from broke.gateway.unserved import unserved
from broke.gateway.wire import ModelStamp, encode, error_body, without_unkept_thinking
from broke.health import ERROR, TIMEOUT, Health, blames_key, reason_for_status
from broke.keys import provider_env
from broke.routing.backends import is_local
from broke.routing.resolve import Candidate, Resolution
from broke.routing.rotation import RotationState
from broke.routing.transport import API_OF_PATH, COUNTING, Route, route_for
from broke.state.model import State

#: Upstream answers that send the request to the next candidate (only before the first byte).
RETRYABLE = {401, 403, 408, 429} | set(range(500, 600))
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta",
                     "user-agent", "x-request-id")
ANTHROPIC_VERSION = "2023-06-01"
#: Failure reasons of broke's own LiteLLM (never blamed on a backend).
LITELLM_GONE, LITELLM_UNAVAILABLE = "litellm_gone", "litellm_unavailable"
#: Token counting (Claude Code asks it before long prompts, Gemini CLI at :countTokens): routed like a
#: request, answered natively by Anthropic backends, estimated by broke for those it translates for,
#: by LiteLLM for the others, spending no tokens.


@dataclass(frozen=True)
class Attempt:
    """One try of one candidate: its number in the request, where it goes, and on which replica."""

    number: int
    candidate: Candidate
    route: Route
    replica: str | None  # a local model's worker URL


@dataclass(frozen=True)
class Exchange:
    """What every attempt of one request shares."""

    path: str
    payload: dict[str, Any]
    headers: dict[str, str]  # the client's headers that are passed on
    scrub: Scrubber  # the secrets masked in errors passed on: this process's and the request's
    resolution: Resolution
    state: State
    health: Health
    started: float
    trace: Trace
    spend: Callable[[int], None]


class Forwarder:
    """Carries out a resolution: sends its attempts, relays the first answer."""

    def __init__(self, record: GatewayRecord, catalog: Catalog, keys: Mapping[str, str], master_key: str,
                 load: WorkerLoad, litellm: LiteLLM, recorder: Recorder, metrics: Metrics,
                 rotation: RotationState) -> None:
        self.record, self.catalog, self.keys, self.master_key = record, catalog, dict(keys), master_key
        self.load, self.litellm, self.recorder, self.metrics, self.rotation = load, litellm, recorder, metrics, rotation
        self.deployments = set(record.deployments)
        self.session: aiohttp.ClientSession | None = None  # made in the server's event loop
        #: every secret this process holds: provider keys, node tokens, LiteLLM's master key
        self.scrubber = Scrubber([*keys.values(), master_key])

    async def forward(self, request: Request, path: str, payload: dict[str, Any], resolution: Resolution,
                      state: State, health: Health, started: float, trace: Trace,
                      spend: Callable[[int], None]) -> Response:
        """Try the resolver's attempts in turn, with the state the request was resolved against: all
        that go to a worker or natively (a backend added while the gateway runs included), and those
        that need LiteLLM if the running LiteLLM knows them."""
        plan = [c for c in resolution.attempts
                if c.deployment in self.deployments or not self._route(path, c, None).through_litellm]
        base_headers = {"x-broke-slot": resolution.slot, "x-broke-generation": str(resolution.generation)}
        if not plan:
            why = unserved(resolution, health, time.time(), self.litellm.home, unloaded=bool(resolution.attempts))
            trace.status, trace.error = why.status, why.message
            await self.recorder.record(Unrouted(why.code, why.status, started, trace))
            response = error_body(why.status, why.code, why.message)
            response.headers.update({**base_headers, **why.headers, "x-broke-attempts": "0"})
            return response
        await self._overflowed(resolution, plan[0])
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        headers["accept-encoding"] = "identity"  # loopback: compression only costs time
        headers["content-type"] = "application/json"  # the body is re-encoded JSON, whatever was sent
        scrub = self.scrubber.with_request(request.headers)
        shared = Exchange(path, payload, headers, scrub, resolution, state, health, started, trace, spend)
        last: tuple[int, bytes, dict[str, str]] = (502, b"", {})
        last_route: Route | None = None
        number = 0
        down: set[str] = set()  # backends that failed as a whole during this request
        failed_workers: set[str] = set()  # local replicas that failed during this request
        litellm_restarted = False  # LiteLLM was found gone once in this request (and is being restarted)
        self.metrics.in_flight += 1
        try:
            for candidate in plan:
                while candidate.backend not in down:
                    replica = self._replica(path, candidate, health, failed_workers)
                    if replica is None:  # every replica failed during this request
                        break
                    number += 1
                    attempt = Attempt(number, candidate, self._route(path, candidate, replica or None), replica or None)
                    answer, failure = await self._try(attempt, shared, base_headers)
                    if answer is not None:
                        return answer
                    assert failure is not None
                    last, last_route = failure.answer, attempt.route
                    if failure.reason == LITELLM_GONE and not litellm_restarted:
                        litellm_restarted = True  # broke's own process failed: no upstream is blamed
                        continue
                    if failure.reason in (LITELLM_GONE, LITELLM_UNAVAILABLE):
                        break
                    if attempt.replica:  # one replica failed: it sits out, and a twin that has not failed goes next
                        failed_workers.add(attempt.replica)
                        await self.recorder.record(AttemptFailed(
                            resolution.slot, candidate, failure, None,
                            worker=worker_key(candidate.backend, attempt.replica)))
                        if any(u not in failed_workers for u in self.load.pools[candidate.backend]):
                            continue
                    if not blames_key(failure.reason):
                        down.add(candidate.backend)
                    policy = state.key_policy.get(candidate.provider)
                    model_policy = state.model_policy.get(resolution.slot)
                    await self.recorder.record(AttemptFailed(
                        resolution.slot, candidate, failure, self.record.key_refs.get(candidate.key_env or ""),
                        cooldown_s=policy.cooldown_s if policy else None,
                        backend_cooldown_s=model_policy.cooldown_s if model_policy else None))
                    break
        finally:
            self.metrics.in_flight -= 1
        status, error, error_headers = last
        if last_route is not None and last_route.translates(path):  # in the client API's own shape
            error = Translation(API_OF_PATH[path], last_route.api, payload).error(status, error)
        trace.status, trace.attempts = status, number
        trace.error = f"every candidate failed ({number} attempts); the last answered {status}"
        await self.recorder.record(Answered(resolution.slot, "-", status, started, trace))
        return Response(scrub.bytes(error), status_code=status, headers={**scrub.headers(error_headers), **base_headers,
                                                            "x-broke-attempts": str(number)},
                        media_type="application/json")

    async def _try(self, attempt: Attempt, shared: Exchange,
                   base_headers: dict[str, str]) -> tuple[Response | None, Failure | None]:
        """One attempt: the client's response, or why it failed before the first byte."""
        candidate, route = attempt.candidate, attempt.route
        if route.via == "translated" and not route.url:  # count_tokens for a backend that cannot count
            return await self._estimate(attempt, shared, base_headers), None
        if route.through_litellm:
            why = await self.litellm.ready()
            if why:
                refusal = orjson.dumps({"error": {"message": why, "type": LITELLM_UNAVAILABLE}})
                return None, Failure(LITELLM_UNAVAILABLE, None, (503, refusal, {}))
        try:
            translation = Translation(API_OF_PATH[shared.path], route.api, shared.payload,
                                      limit_field="max_completion_tokens" if candidate.provider == "openai"
                                      else "max_tokens") if route.translates(shared.path) else None
        except InvalidInputError as exc:  # a request broke's translation cannot carry: said at once
            return await self._untranslatable(attempt, shared, base_headers, str(exc)), None
        lease = self.load.acquire(candidate.backend, attempt.replica) if is_local(candidate.provider, self.catalog) \
            else None
        sent = self._body(translation.body if translation else shared.payload, candidate, route)
        # a chat stream's usage is asked for where the client did not ask (and stripped again); a backend spoken
        # to in another API reports its usage in its own events, which the translation carries
        strip_usage = translation is None and asks_stream_usage(shared.path, sent)
        if strip_usage:
            sent = with_stream_usage(sent)
        upstream, content, failure = await self._send(route.url, encode(sent),
                                                      self._headers(route, attempt, shared.headers))
        if upstream is None:
            if lease:
                self.load.release(lease)
            if route.through_litellm and failure is not None and failure.status is None and failure.reason == ERROR:
                self.litellm.gone()  # no connection to LiteLLM: it died, not the backend behind it
                return None, Failure(LITELLM_GONE, None, failure.answer)
            return None, failure
        answer_headers = {**response_headers(upstream), **base_headers, "x-broke-backend": candidate.backend,
                          "x-broke-attempts": str(attempt.number),
                          "x-broke-via": route.via if route.via in ("litellm", "translated") else "native"}
        self.rotation.succeeded(candidate.provider, candidate.key_env)
        worker = worker_key(candidate.backend, attempt.replica) if attempt.replica else None
        trace = shared.trace
        if attempt.replica:  # where it ran: the node (or this machine) and the replica
            trace.node = self.load.where(attempt.replica)
            trace.replica = replica_name(candidate.backend, attempt.replica, trace.node)
            answer_headers.update({"x-broke-node": trace.node, "x-broke-replica": trace.replica})
        forgiven = self.recorder.transitions.to_forgive(candidate.backend, candidate.key_env, worker, shared.health)
        if forgiven:
            await self.recorder.record(Succeeded(forgiven))
        trace.backend, trace.attempts = candidate.backend, attempt.number
        trace.key_ref = self.record.key_refs.get(candidate.key_env or "")
        own = (candidate.definition.model,) if candidate.definition else ()
        stamp = translation or ModelStamp((route.model, *own), shared.payload["model"], local=lease is not None)
        relay = Relay(upstream, answer_headers, shared.resolution.slot, candidate.backend, shared.started, lease,
                      stamp, trace, shared.spend, content, shared.scrub, self.record.first_byte_timeout_s,
                      UsageMeter(shared.path), strip_usage)
        return await relay.response(self.load, self.metrics, self.recorder, spends=shared.path not in COUNTING), None

    async def _send(self, url: str, body: bytes, headers: dict[str, str]
                    ) -> tuple[aiohttp.ClientResponse | None, bytes | None, Failure | None]:
        """Send one attempt: (the upstream's answer, its whole body unless it streams, None), or
        (None, None, why it failed before anything reached the client). A body that is not a stream
        is read here, within the first-byte bound again, so that one cut, stalled or (for a success)
        not a JSON object fails over like an error before the headers."""
        assert self.session is not None, "the server's lifespan makes the session"
        bound = self.record.first_byte_timeout_s
        try:
            async with asyncio.timeout(bound):
                upstream = await self.session.post(url, data=body, headers=headers)
        except TimeoutError:
            return None, None, Failure(TIMEOUT, None, (
                504, b'{"error":{"message":"upstream timed out before the first byte"}}', {}))
        except aiohttp.ClientError as exc:
            message = {"error": {"message": f"upstream unreachable: {type(exc).__name__}"}}
            return None, None, Failure(ERROR, None, (502, orjson.dumps(message), {}))
        status = upstream.status
        if status not in RETRYABLE and is_stream(upstream):
            if not 200 <= status < 300:
                return upstream, None, None
            return await self._first_event(upstream, bound)
        try:
            async with asyncio.timeout(bound):
                content = await upstream.read()
        except TimeoutError:
            upstream.close()
            return None, None, Failure(TIMEOUT, status, (
                504, b'{"error":{"message":"upstream stalled after its headers"}}', {}))
        except aiohttp.ClientError as exc:
            upstream.close()
            message = {"error": {"message": f"upstream answer cut after its headers: {type(exc).__name__}"}}
            return None, None, Failure(ERROR, status, (502, orjson.dumps(message), {}))
        finally:
            upstream.release()
        if status in RETRYABLE:
            return None, None, Failure(reason_for_status(status), status, (status, content, response_headers(upstream)),
                                       retry_after(upstream.headers.get("retry-after")))
        if 200 <= status < 300 and not json_object(content):
            return None, None, Failure(ERROR, status, (
                502, b'{"error":{"message":"upstream answered with a body that is not a JSON object"}}', {}))
        return upstream, content, None

    async def _untranslatable(self, attempt: Attempt, shared: Exchange, base_headers: dict[str, str],
                              why: str) -> Response:
        """A 400 for a request broke cannot translate for this backend."""
        trace = shared.trace
        trace.backend, trace.attempts, trace.status, trace.error = attempt.candidate.backend, attempt.number, 400, why
        await self.recorder.record(Answered(shared.resolution.slot, attempt.candidate.backend, 400, shared.started,
                                            trace))
        response = error_body(400, "invalid_request_error", why)
        response.headers.update({**base_headers, "x-broke-backend": attempt.candidate.backend,
                                 "x-broke-attempts": str(attempt.number), "x-broke-via": "translated"})
        return response

    async def _estimate(self, attempt: Attempt, shared: Exchange, base_headers: dict[str, str]) -> Response:
        """count_tokens answered by broke: an estimate, for a backend that cannot count."""
        trace = shared.trace
        trace.backend, trace.attempts, trace.status = attempt.candidate.backend, attempt.number, 200
        await self.recorder.record(Answered(shared.resolution.slot, attempt.candidate.backend, 200, shared.started,
                                            trace))
        headers = {**base_headers, "x-broke-backend": attempt.candidate.backend,
                   "x-broke-attempts": str(attempt.number), "x-broke-via": "translated"}
        return JSONResponse(count_estimate(API_OF_PATH[shared.path], shared.payload), headers=headers)

    @staticmethod
    async def _first_event(upstream: aiohttp.ClientResponse, bound: float
                           ) -> tuple[aiohttp.ClientResponse | None, bytes | None, Failure | None]:
        """A stream's first bytes, read within the first-byte bound before its headers go to the client (the
        relay sends them first): a stream that stalls or ends before them fails over like an error before
        the headers."""
        status = upstream.status
        try:
            async with asyncio.timeout(bound):
                first = await upstream.content.readany()
        except TimeoutError:
            upstream.close()
            return None, None, Failure(TIMEOUT, status, (
                504, b'{"error":{"message":"upstream stream stalled before its first event"}}', {}))
        except aiohttp.ClientError:
            first = b""
        if not first:
            upstream.close()
            return None, None, Failure(ERROR, status, (
                502, b'{"error":{"message":"upstream stream ended before its first event"}}', {}))
        return upstream, first, None

    def _replica(self, path: str, candidate: Candidate, health: Health, failed: set[str]) -> str | None:
        """The local worker a request goes to directly ("": not a worker's; None: none left)."""
        if path in COUNTING or candidate.backend not in self.load.pools:
            return ""
        return self.load.pick(candidate.backend, health, time.time(), failed)

    def _route(self, path: str, candidate: Candidate, replica: str | None) -> Route:
        return route_for(path, candidate, self.catalog, self.load.pools, replica=replica,
                         native_forwarding=self.record.native_forwarding, litellm_url=self.litellm.url)

    def _body(self, payload: dict[str, Any], candidate: Candidate, route: Route) -> dict[str, Any]:
        """The body for one attempt: the route's model name, Anthropic's thinking rule when it goes to
        Anthropic natively, and token limits a local worker can serve."""
        body = {**payload, "model": route.model}
        if route.auth == "x-api-key":  # Anthropic's own Messages API
            body = without_unkept_thinking(body)
        if is_local(candidate.provider, self.catalog):
            for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                if field in body and body[field] is None:
                    del body[field]  # mlx_lm.server refuses null
                elif isinstance(body.get(field), int) and body[field] > self.record.local_max_tokens:
                    body[field] = self.record.local_max_tokens
        return body

    def _headers(self, route: Route, attempt: Attempt, client: dict[str, str]) -> dict[str, str]:
        """The upstream's own authentication (never the client's broke token) and API version."""
        if route.auth == "master-key":
            return {**client, "authorization": f"Bearer {self.master_key}"}
        headers = {k: v for k, v in client.items() if k not in ("authorization", "x-api-key")}
        if route.auth == "worker-token":
            seat = self.load.nodes.get(attempt.replica or "")
            token = self._node_token(seat.token_env) if seat and seat.token_env else None
            if token:  # a node on another machine, behind its token check
                headers["authorization"] = f"Bearer {token}"
            return headers
        key = self.keys.get(attempt.candidate.key_env or "")
        if route.auth == "x-api-key":
            if key:
                headers["x-api-key"] = key
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        elif key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _node_token(self, env: str) -> str | None:
        """A node's token: from this process's keys, or (a node added while the gateway runs) from the
        home's `.env`, read once and then masked in errors like every other secret."""
        if env not in self.keys:
            token = provider_env(self.litellm.home / ".env").get(env)
            if not token:
                return None
            self.keys[env] = token
            self.scrubber = Scrubber([*self.keys.values(), self.master_key])
        return self.keys[env]

    async def _overflowed(self, resolution: Resolution, first: Candidate) -> None:
        """Busy local models that a request passes over for a later candidate: counted and logged."""
        if first.busy:
            return
        for candidate in resolution.candidates:
            if candidate.deployment == first.deployment:
                return
            if candidate.busy:
                await self.recorder.record(PassedOver(resolution.slot, candidate))


def json_object(content: bytes) -> bool:
    """Whether an answer's body is one JSON object (what every API broke serves answers with)."""
    try:
        return isinstance(orjson.loads(content), dict)
    except orjson.JSONDecodeError:
        return False


def retry_after(value: str | None) -> float | None:
    """Seconds an upstream's Retry-After asks for (a number of seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
