"""The HTTP control API under `/admin/v1`, for scripts, frameworks and other tools.

Every call needs the admin token (`broke connect --admin`), which is never the client token: a client
or profile token gets 403, no token or a wrong one 401 (then 429 when repeated). Only loopback clients
addressing a loopback name are answered (no DNS rebinding). Changes go through `broke.changes`, the
functions the CLI and the dashboard call, so they mean the same, fail the same way (409 frozen,
404 unknown name in the path, 400 bad input) and bump the same generation. `openapi.json` lists it all.
"""
from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broke import changes
from broke.changes.health import key_rows, model_rows, set_key_state, set_model_state
from broke.changes.routes import set_route
from broke.control.tokens import admin_token_path, read_admin_token
from broke.errors import BrokeError, NotFoundError
from broke.gateway.admin_spec import BODIES, openapi
from broke.gateway.auth import Authenticator, is_loopback
from broke.gateway.dashboard import views
from broke.gateway.dashboard.app import LiveView, change_refused, json_error
from broke.gateway.dashboard.sessions import host_allowed
from broke.gateway.live import Watched
from broke.state.store import StateStore

PREFIX = "/admin/v1"
Handler = Callable[[Request], Awaitable[Response]]


class BadBody(ValueError):
    """A request body of the wrong shape (400)."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as OpenAPI writes it, under PREFIX
    handler: Handler
    summary: str
    body: str = ""  # name of the request body's schema in admin_spec.BODIES
    public: bool = False  # answered without the admin token (still loopback only)

    @property
    def route_path(self) -> str:
        return PREFIX + self.path.replace("{backend}", "{backend:path}")


class AdminAPI:
    def __init__(self, view: LiveView) -> None:
        self.view, self.home = view, view.home
        self.token: Watched[str] = Watched(admin_token_path(view.home), lambda: read_admin_token(view.home) or "",
                                           str)

    def endpoints(self) -> list[Endpoint]:
        e = Endpoint
        return [
            e("GET", "/state", self.state, "The state file as it is now (generation, slots, policies, access)"),
            e("PUT", "/frozen", self.frozen, "Freeze or unfreeze the state", "Frozen"),
            e("GET", "/slots", self.slots, "Every slot: its chain and what a request gets now"),
            e("GET", "/slots/{slot}", self.slot, "One slot: its chain and what a request gets now"),
            e("PUT", "/slots/{slot}", self.put_slot, "Set a slot's backend and/or fallbacks (one generation)",
              "Route"),
            e("GET", "/teams", self.teams, "Teams (saved slot mappings), shipped and the user's"),
            e("POST", "/teams/{name}/load", self.load_team, "Load a team into the slots"),
            e("GET", "/profiles", self.profiles, "Profiles (a team plus access limits)"),
            e("POST", "/profiles/{name}/load", self.load_profile, "Load a profile: its team and access"),
            e("GET", "/policies/keys", self.key_policies, "Key policy of every provider with keys"),
            e("PUT", "/policies/keys/{provider}", self.put_key_policy, "Change a provider's key policy",
              "KeyPolicy"),
            e("GET", "/policies/models", self.model_policies, "Model policy of every slot"),
            e("PUT", "/policies/models/{slot}", self.put_model_policy, "Change a slot's model policy",
              "ModelPolicy"),
            e("GET", "/keys", self.keys, "Every key's health (variable names, never values)"),
            e("PUT", "/keys/{key}", self.put_key, "Set a key's health by hand", "KeyState"),
            e("GET", "/models", self.models, "Every routed backend's health"),
            e("PUT", "/models/{backend}", self.put_model, "Set a backend's health by hand", "ModelState"),
            e("GET", "/workers", self.workers, "Local workers on this machine"),
            e("GET", "/nodes", self.nodes, "Workers on other machines, with their health"),
            e("GET", "/health", self.health, "Health of keys, backends and workers"),
            e("GET", "/metrics", self.metrics, "Requests, errors, failovers and latency per slot and backend"),
            e("GET", "/openapi.json", self.document, "This document", public=True),
        ]

    def routes(self) -> list[Route]:
        return [Route(e.route_path, self._guarded(e), methods=[e.method]) for e in self.endpoints()]

    # ---- who may ask ----------------------------------------------------------------------------
    def _refusal(self, request: Request) -> Response | None:
        """Why a request may not use the admin API, or None."""
        auth: Authenticator = self.view.auth
        token = auth.token_of(request)
        expected = self.token.get()
        if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
            return None
        if token and token in auth.owners.get():
            return json_error(403, "a client or profile token cannot use the admin API; see `broke connect --admin`",
                          "permission_error")
        address, now = (request.client.host if request.client else "?"), time.time()
        if auth.limiter.blocked(address, now):
            return json_error(429, "too many failed authentications; wait a minute", "rate_limited")
        auth.limiter.fail(address, now)
        what = "invalid admin token" if token else "missing admin token (Authorization: Bearer)"
        return json_error(401, f"{what}; see `broke connect --admin`", "authentication_error")

    def _guarded(self, endpoint: Endpoint) -> Handler:
        async def guarded(request: Request) -> Response:
            if not is_loopback(request) or not host_allowed(request.headers.get("host", "")):
                return json_error(403, f"{PREFIX} answers loopback clients (and loopback Host names) only", "forbidden")
            refusal = None if endpoint.public else self._refusal(request)
            if refusal is not None:
                return refusal
            try:
                return await endpoint.handler(request)
            except (BrokeError, BadBody) as exc:
                return change_refused(exc)

        return guarded

    # ---- helpers --------------------------------------------------------------------------------
    def _store(self) -> StateStore:
        return StateStore(self.home)

    @staticmethod
    async def _body(request: Request, schema: str) -> dict[str, Any]:
        """The JSON object of a request, checked against its schema's fields and types."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise BadBody("the body must be a JSON object")
        spec = BODIES[schema]
        fields = spec["properties"]
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise BadBody(f"unknown field(s) {', '.join(unknown)}; fields are: {', '.join(fields)}")
        for name in spec.get("required", []):
            if name not in body:
                raise BadBody(f"'{name}' is required")
        for name, value in body.items():
            _check_type(name, value, fields[name])
        return body

    async def _changed(self, call: Callable[[], Any]) -> Response:
        state = await asyncio.to_thread(call)
        return JSONResponse({"generation": state.generation})

    # ---- state and slots ------------------------------------------------------------------------
    async def state(self, request: Request) -> Response:
        from broke.state.schema import unstructure

        return JSONResponse(unstructure(await asyncio.to_thread(self._store().load)))

    async def frozen(self, request: Request) -> Response:
        body = await self._body(request, "Frozen")
        return await self._changed(lambda: changes.set_frozen(self._store(), body["frozen"]))

    async def slots(self, request: Request) -> Response:
        view = await asyncio.to_thread(views.slots_view, self.home)
        return JSONResponse({"generation": view["generation"], "frozen": view["frozen"], "slots": view["slots"]})

    async def slot(self, request: Request) -> Response:
        from broke.catalog import load_catalog

        name = changes.check_slot(request.path_params["slot"], load_catalog())
        view = await asyncio.to_thread(views.slots_view, self.home)
        return JSONResponse(next(row for row in view["slots"] if row["slot"] == name))

    async def put_slot(self, request: Request) -> Response:
        from broke.catalog import load_catalog

        slot = changes.check_slot(request.path_params["slot"], load_catalog())  # unknown slot: 404
        body = await self._body(request, "Route")
        try:
            return await self._changed(lambda: set_route(self._store(), slot, backend=body.get("backend"),
                                                         fallbacks=body.get("fallbacks")))
        except NotFoundError as exc:  # an unknown backend is bad input, not a missing resource
            raise BadBody(str(exc)) from None

    # ---- teams and profiles ---------------------------------------------------------------------
    async def teams(self, request: Request) -> Response:
        from broke.presets import teams

        active = self.view.state.get().active_team
        return JSONResponse([{"name": e.name, "origin": e.origin, "description": e.preset.description,
                              "active": e.name == active} for e in teams(self.home).list()])

    async def load_team(self, request: Request) -> Response:
        return await self._changed(lambda: changes.load_team(self._store(), request.path_params["name"]))

    async def profiles(self, request: Request) -> Response:
        from broke.presets import profiles

        active = self.view.state.get().active_profile
        return JSONResponse([{"name": e.name, "origin": e.origin, "description": e.preset.description,
                              "team": e.preset.team, "access": asdict(e.preset.access),
                              "active": e.name == active} for e in profiles(self.home).list()])

    async def load_profile(self, request: Request) -> Response:
        return await self._changed(lambda: changes.load_profile(self._store(), request.path_params["name"]))

    # ---- policies -------------------------------------------------------------------------------
    async def key_policies(self, request: Request) -> Response:
        from broke.catalog import load_catalog
        from broke.state.model import KeyPolicy

        state = self.view.state.get()
        providers = changes.key_policy_providers(state, load_catalog())
        return JSONResponse({p: asdict(state.key_policy.get(p, KeyPolicy())) for p in providers})

    async def put_key_policy(self, request: Request) -> Response:
        body = await self._body(request, "KeyPolicy")
        return await self._changed(lambda: changes.set_key_policy(
            self._store(), request.path_params["provider"], mode=body.get("mode"),
            cooldown_s=body.get("cooldown_s"), retries=body.get("retries"), order=body.get("order")))

    async def model_policies(self, request: Request) -> Response:
        from broke.catalog import load_catalog
        from broke.state.model import ModelPolicy

        state = self.view.state.get()
        return JSONResponse({s: asdict(state.model_policy.get(s, ModelPolicy())) for s in load_catalog().slots})

    async def put_model_policy(self, request: Request) -> Response:
        from broke.catalog import load_catalog

        slot = changes.check_slot(request.path_params["slot"], load_catalog())
        body = await self._body(request, "ModelPolicy")
        try:
            return await self._changed(lambda: changes.set_model_policy(self._store(), slot, **body))
        except NotFoundError as exc:
            raise BadBody(str(exc)) from None

    # ---- health by hand -------------------------------------------------------------------------
    async def keys(self, request: Request) -> Response:
        return JSONResponse([asdict(r) for r in await asyncio.to_thread(key_rows, self.home)])

    async def put_key(self, request: Request) -> Response:
        body = await self._body(request, "KeyState")
        until = await asyncio.to_thread(set_key_state, self.home, request.path_params["key"], body["status"],
                                        body.get("seconds"))
        return JSONResponse({"status": body["status"], "until": until})

    async def models(self, request: Request) -> Response:
        rows = [asdict(r) for r in await asyncio.to_thread(model_rows, self.home)]
        return JSONResponse([{k: v for k, v in row.items() if k != "provider"} for row in rows])

    async def put_model(self, request: Request) -> Response:
        body = await self._body(request, "ModelState")
        until = await asyncio.to_thread(set_model_state, self.home, request.path_params["backend"],
                                        body["status"], body.get("seconds"))
        return JSONResponse({"status": body["status"], "until": until})

    # ---- the running gateway --------------------------------------------------------------------
    async def workers(self, request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(views.workers_view, self.home))

    async def nodes(self, request: Request) -> Response:
        return JSONResponse(views.nodes_view(self.view.state.get(), self.view.health.get(), time.time()))

    async def health(self, request: Request) -> Response:
        state = self.view.state.get()
        return JSONResponse({"generation": state.generation, "frozen": state.frozen,
                             **views.health_view(self.view.health.get(), time.time(), self.view.key_refs)})

    async def metrics(self, request: Request) -> Response:
        return JSONResponse(views.stats_view(self.view.metrics))

    async def document(self, request: Request) -> Response:
        return JSONResponse(openapi(PREFIX, [(e.method, e.path, e.summary, e.body, e.public)
                                             for e in self.endpoints()]))


def _check_type(name: str, value: object, schema: dict[str, Any]) -> None:
    """A body field of the type its schema gives (JSON's: string, integer, number, boolean, array of strings)."""
    kind = schema["type"]
    ok = {
        "string": lambda v: isinstance(v, str) and bool(v),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
    }[kind](value)
    if not ok:
        what = "a list of non-empty strings" if kind == "array" else f"a{'n' if kind == 'integer' else ''} {kind}"
        raise BadBody(f"'{name}' must be {what}")
    if "enum" in schema and value not in schema["enum"]:
        raise BadBody(f"'{name}' must be one of {', '.join(schema['enum'])}")
