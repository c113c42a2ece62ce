"""The dashboard at /ui: pages, its JSON API and live events, served by the front proxy.

Every page and call needs a login: the client token (typed into the login form, or sent as a bearer
token by the CLI), or the session cookie a login sets. Changes go through `broke.changes`, the same
functions the CLI calls; with a session they must carry its CSRF token and come from this origin.
"""
from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from broke import changes
from broke.errors import BrokeError, FrozenError, NotFoundError
from broke.gateway.auth import Authenticator, is_loopback
from broke.gateway.dashboard import views
from broke.gateway.dashboard.sessions import (
    COOKIE,
    SESSION_TTL_S,
    Session,
    Sessions,
    csrf_matches,
    host_allowed,
    same_origin,
)
from broke.gateway.live import Watched
from broke.gateway.metrics import Metrics
from broke.gateway.traffic import Traffic
from broke.health import Health
from broke.state.model import State
from broke.state.store import StateStore

ASSETS = Path(__file__).with_name("ui")
#: Files under ui/ the dashboard serves; the public ones also to the login page (nothing private in them).
PUBLIC_ASSETS = {"style.css": "text/css", "icon.svg": "image/svg+xml"}
PRIVATE_ASSETS = {"app.js": "text/javascript"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make form posts say Origin: null
    "cache-control": "no-store",
}
#: A login form is one token: anything larger is not one.
LOGIN_BODY_LIMIT = 4096
#: How often the live stream looks for a new state or health generation.
STATE_POLL_S = 1.0

Handler = Callable[[Request], Awaitable[Response]]


def json_error(status: int, message: str, kind: str = "error") -> JSONResponse:
    """The dashboard's and the control API's error body."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def change_refused(exc: Exception) -> JSONResponse:
    """A change broke refused, as the dashboard and the control API answer it: 409 frozen, 404 not found,
    else 400."""
    if isinstance(exc, FrozenError):
        return json_error(409, str(exc), "frozen")
    if isinstance(exc, NotFoundError):
        return json_error(404, str(exc), "not_found")
    return json_error(400, str(exc), "invalid_input")


@dataclass(frozen=True)
class LiveView:
    """What the dashboard may see of the running front proxy: no more."""

    home: Path
    auth: Authenticator
    traffic: Traffic
    metrics: Metrics
    state: Watched[State]
    health: Watched[Health]
    key_refs: Mapping[str, str]


class Dashboard:
    def __init__(self, proxy: LiveView) -> None:
        self.proxy = proxy
        self.home = proxy.home
        self.sessions = Sessions()

    def routes(self) -> list[Route]:
        api, change = self._api, self._change
        return [
            Route("/ui", self._page(self.index), methods=["GET"]),
            Route("/ui/login", self._guarded(self.login_page), methods=["GET"]),
            Route("/ui/login", self._guarded(self.login), methods=["POST"]),
            Route("/ui/logout", change(self.logout), methods=["POST"]),
            Route("/ui/static/{name}", self._guarded(self.asset), methods=["GET"]),
            Route("/ui/api/link", self._guarded(self.link), methods=["POST"]),
            Route("/ui/api/session", api(self.session_info), methods=["GET"]),
            Route("/ui/api/overview", api(self.overview), methods=["GET"]),
            Route("/ui/api/traffic", api(self.traffic), methods=["GET"]),
            Route("/ui/api/health", api(self.health), methods=["GET"]),
            Route("/ui/api/local", api(self.local), methods=["GET"]),
            Route("/ui/api/harness", api(self.harness), methods=["GET"]),
            Route("/ui/api/cost", api(self.cost), methods=["GET"]),
            Route("/ui/api/events", api(self.events), methods=["GET"]),
            Route("/ui/api/swap", change(self.swap), methods=["POST"]),
            Route("/ui/api/fallbacks", change(self.fallbacks), methods=["POST"]),
            Route("/ui/api/team", change(self.team), methods=["POST"]),
            Route("/ui/api/profile", change(self.profile), methods=["POST"]),
            Route("/ui/api/freeze", change(self.freeze), methods=["POST"]),
            Route("/ui/api/feedback", change(self.feedback), methods=["POST"]),
        ]

    # ---- who may ask ----------------------------------------------------------------------------
    def _guarded(self, handler: Handler) -> Handler:
        """Loopback clients addressing a loopback name only; every answer with the security headers."""
        async def guarded(request: Request) -> Response:
            if not is_loopback(request) or not host_allowed(request.headers.get("host", "")):
                response: Response = json_error(403, "the dashboard answers loopback clients at 127.0.0.1 only",
                                            "forbidden")
            else:
                response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return guarded

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), time.time())

    def _bearer_is_client(self, request: Request) -> bool:
        token = self.proxy.auth.token_of(request)
        return bool(token) and self.proxy.auth.owners.get().get(token) == "client"

    def _page(self, handler: Handler) -> Handler:
        async def page(request: Request) -> Response:
            if self._session(request) is None:
                return RedirectResponse("/ui/login", status_code=303)
            return await handler(request)

        return self._guarded(page)

    def _api(self, handler: Handler) -> Handler:
        async def api(request: Request) -> Response:
            if self._session(request) is None and not self._bearer_is_client(request):
                return json_error(401, "log in first: open /ui/login, or run `broke dashboard --open`",
                              "authentication_error")
            return await handler(request)

        return self._guarded(api)

    def _change(self, handler: Handler) -> Handler:
        """A state change: from this origin, and with a session's CSRF token (or the client token)."""
        async def change(request: Request) -> Response:
            host = request.headers.get("host", "")
            if not same_origin(request.headers.get("origin"), host) or \
                    request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return json_error(403, "cross-site request refused", "forbidden")
            session = self._session(request)
            if session is not None:
                if not csrf_matches(session.csrf, request.headers.get("x-broke-csrf")):
                    return json_error(403, "missing or wrong CSRF token; reload the page", "forbidden")
            elif not self._bearer_is_client(request):
                return json_error(401, "log in first: open /ui/login, or run `broke dashboard --open`",
                              "authentication_error")
            return await handler(request)

        return self._guarded(change)

    # ---- pages and login --------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return Response((ASSETS / "index.html").read_bytes(), media_type="text/html")

    @staticmethod
    def _login_form(message: str = "", status: int = 200) -> Response:
        text = (ASSETS / "login.html").read_text().replace("{{message}}", html.escape(message))
        return Response(text, status_code=status, media_type="text/html")

    def _logged_in(self) -> Response:
        session_id, _ = self.sessions.create(time.time())
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(COOKIE, session_id, max_age=int(SESSION_TTL_S), path="/ui", httponly=True,
                            samesite="strict")
        return response

    async def login_page(self, request: Request) -> Response:
        code = request.query_params.get("code")
        if code is None:
            return self._login_form()
        if self.sessions.redeem(code, time.time()):
            return self._logged_in()
        return self._login_form("That login link was used already or has expired; "
                                "run `broke dashboard --open` again, or paste the token.", 401)

    async def login(self, request: Request) -> Response:
        if not same_origin(request.headers.get("origin"), request.headers.get("host", "")):
            return json_error(403, "cross-site request refused", "forbidden")
        address = request.client.host if request.client else "?"
        limiter, now = self.proxy.auth.limiter, time.time()
        if limiter.blocked(address, now):
            return self._login_form("Too many failed logins; wait a minute.", 429)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > LOGIN_BODY_LIMIT:
                return self._login_form("That is not a login form.", 413)
        token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        if token and self.proxy.auth.owners.get().get(token) == "client":
            return self._logged_in()
        limiter.fail(address, now)
        return self._login_form("That is not the client token (see `broke connect`).", 401)

    async def logout(self, request: Request) -> Response:
        self.sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    async def link(self, request: Request) -> Response:
        """A one-time login link for `broke dashboard`, asked with the client token."""
        if not self._bearer_is_client(request) or request.headers.get("origin"):
            return json_error(401, "a login link needs the client token (see `broke connect`)",
                          "authentication_error")
        return JSONResponse({"path": f"/ui/login?code={self.sessions.new_link(time.time())}"})

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        kind = PUBLIC_ASSETS.get(name) or PRIVATE_ASSETS.get(name)
        if kind is None:
            return json_error(404, "not found", "not_found")
        if name in PRIVATE_ASSETS and self._session(request) is None:
            return json_error(401, "log in first: open /ui/login", "authentication_error")
        return Response((ASSETS / name).read_bytes(), media_type=kind)

    # ---- reading ----------------------------------------------------------------------------------
    async def session_info(self, request: Request) -> Response:
        session = self._session(request)
        return JSONResponse({"csrf": session.csrf if session else None})

    async def overview(self, request: Request) -> Response:
        try:
            view = await asyncio.to_thread(views.slots_view, self.home)
        except BrokeError as exc:
            return json_error(500, str(exc), type(exc).__name__)
        return JSONResponse(view)

    async def traffic(self, request: Request) -> Response:
        return JSONResponse({"recent": list(self.proxy.traffic.recent),
                             "stats": views.stats_view(self.proxy.metrics)})

    async def health(self, request: Request) -> Response:
        workers = await asyncio.to_thread(views.workers_view, self.home)
        health, now = self.proxy.health.get(), time.time()
        return JSONResponse({**views.health_view(health, now, self.proxy.key_refs),
                             "worker_processes": workers,
                             "nodes": views.nodes_view(self.proxy.state.get(), health, now)})

    async def local(self, request: Request) -> Response:
        baselines = await asyncio.to_thread(views.baselines_view, self.home)
        decisions = [t for t in self.proxy.traffic.recent if t["tier"]]
        return JSONResponse({"baselines": baselines, "decisions": decisions[-50:]})

    async def harness(self, request: Request) -> Response:
        from broke.harness.inspect import dashboard_view

        try:
            return JSONResponse(await asyncio.to_thread(dashboard_view, self.home))
        except BrokeError as exc:
            return json_error(500, str(exc), type(exc).__name__)

    async def cost(self, request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(views.cost_view, self.home, self.proxy.state.get()))

    def _generations(self) -> tuple[int, int]:
        try:
            return self.proxy.state.get().generation, self.proxy.health.get().generation
        except BrokeError:
            return -1, -1

    async def events(self, request: Request) -> Response:
        """Server-sent events: `request` for each finished request, `state` when state or health changes."""
        queue = self.proxy.traffic.listen()

        async def stream():
            try:
                yield b"retry: 2000\n\n"
                seen, checked = self._generations(), time.monotonic()
                while True:
                    try:
                        entry = await asyncio.wait_for(queue.get(), timeout=STATE_POLL_S)
                        yield b"event: request\ndata: " + orjson.dumps(entry) + b"\n\n"
                    except TimeoutError:
                        yield b": idle\n\n"
                    if time.monotonic() - checked >= STATE_POLL_S:
                        checked, now = time.monotonic(), self._generations()
                        if now != seen:
                            seen = now
                            body = {"generation": now[0], "health_generation": now[1]}
                            yield b"event: state\ndata: " + orjson.dumps(body) + b"\n\n"
            finally:
                self.proxy.traffic.leave(queue)

        return StreamingResponse(stream(), media_type="text/event-stream")

    # ---- changing: the CLI's own core functions -----------------------------------------------------
    async def _apply(self, request: Request, call: Callable[[dict], State]) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return json_error(400, "the body must be a JSON object", "invalid_request_error")
        try:
            state = await asyncio.to_thread(call, body)
        except (BrokeError, ValueError) as exc:
            return change_refused(exc)
        return JSONResponse({"generation": state.generation})

    @staticmethod
    def _text(body: dict, name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"'{name}' must be a non-empty string")
        return value

    def _store(self) -> StateStore:
        return StateStore(self.home)

    async def swap(self, request: Request) -> Response:
        return await self._apply(request, lambda b: changes.swap(
            self._store(), [(self._text(b, "slot"), self._text(b, "backend"))]))

    async def fallbacks(self, request: Request) -> Response:
        def call(body: dict) -> State:
            entries = body.get("fallbacks")
            if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
                raise ValueError("'fallbacks' must be a list of backend ids or slot names")
            return changes.set_fallbacks(self._store(), self._text(body, "slot"), entries)

        return await self._apply(request, call)

    async def team(self, request: Request) -> Response:
        return await self._apply(request, lambda b: changes.load_team(self._store(), self._text(b, "name")))

    async def profile(self, request: Request) -> Response:
        return await self._apply(request, lambda b: changes.load_profile(self._store(), self._text(b, "name")))

    async def feedback(self, request: Request) -> Response:
        """Thumbs on an `auto` decision: good|bad on its request (broke.router.outcomes.give_feedback)."""
        from broke.router.outcomes import give_feedback

        try:
            body = orjson.loads(await request.body())
            given = await asyncio.to_thread(give_feedback, self.home, self._text(body, "request_id"),
                                            self._text(body, "verdict"))
        except (orjson.JSONDecodeError, AttributeError, ValueError) as exc:
            return json_error(400, str(exc) if isinstance(exc, ValueError) else "the body must be a JSON object",
                          "invalid_request_error")
        except NotFoundError as exc:
            return json_error(404, str(exc), "not_found")
        except BrokeError as exc:
            return json_error(400, str(exc), "invalid_input")
        return JSONResponse({"learned": given.learned, **({"why_not": given.why_not} if given.why_not else {})})

    async def freeze(self, request: Request) -> Response:
        def call(body: dict) -> State:
            if not isinstance(body.get("frozen"), bool):
                raise ValueError("'frozen' must be true or false")
            return changes.set_frozen(self._store(), body["frozen"])

        return await self._apply(request, call)
