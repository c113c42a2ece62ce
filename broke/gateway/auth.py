"""Client authentication for the front proxy: tokens, profile-bound scopes, bad-token rate limiting.

`X-Broke-Profile: P` on the client token narrows that request to profile P: P's slots and rates
(counted with P's own token) on top of the client token's own; it never widens a token. A
profile token may name only its own profile; an unknown profile is refused.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from broke.control.runfiles import TokenStore
from broke.gateway.limits import FailedAuthLimiter
from broke.gateway.live import Watched
from broke.presets import profiles
from broke.routing.resolve import Scope
from broke.state.model import Access, Budget

PROFILE_HEADER = "x-broke-profile"
CLIENT = "client"


def is_loopback(request: Request) -> bool:
    """True when the request comes from this machine."""
    host = request.client.host if request.client else ""
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


@dataclass(frozen=True)
class Client:
    """Who is asking: the owner of the token and the access limits that go with it."""

    owner: str  # "client" or "profile:NAME"
    scope: Scope | None  # None: the state's own access limits
    #: Also held to the client token's own limits (the state's): X-Broke-Profile narrowed it.
    narrowed: bool = False
    budget: Budget | None = None  # the profile's spending limit
    on_budget: str = "refuse"  # what its requests get past it

    def limits(self, state_access: Access) -> list[tuple[str, Access]]:
        """Every (rate-limit owner, access limits) the request must satisfy."""
        own = [(self.owner, self.scope.access if self.scope else state_access)]
        return [(CLIENT, state_access), *own] if self.narrowed else own


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    metric: str


class Authenticator:
    def __init__(self, home: Path) -> None:
        self.home = home
        tokens = TokenStore(home)
        self.owners: Watched[dict[str, str]] = Watched(
            tokens.path, lambda: {token: owner for owner, token in tokens.load().items()}, dict)
        self.limiter = FailedAuthLimiter()

    @staticmethod
    def token_of(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return (token or request.headers.get("x-api-key", "").strip()
                or request.headers.get("x-goog-api-key", "").strip()  # Google's API (Gemini CLI)
                or (request.query_params.get("key", "").strip() if request.url.path.startswith("/v1beta/") else ""))

    def check(self, request: Request) -> Client | Refusal:
        """The client a request's token belongs to, or why it is refused (401, then 429 when repeated)."""
        address = request.client.host if request.client else "?"
        now = time.time()
        token = self.token_of(request)
        owner = self.owners.get().get(token) if token else None
        if owner is None:
            if self.limiter.blocked(address, now):  # a valid token still gets through
                return Refusal(429, "rate_limited", "too many failed authentications; wait a minute",
                               "auth_rate_limited")
            self.limiter.fail(address, now)
            what = "invalid token" if token else \
                "missing token (Authorization: Bearer, x-api-key, x-goog-api-key or ?key=)"
            return Refusal(401, "authentication_error", f"{what}; see `broke connect`", "bad_token")
        asked = request.headers.get(PROFILE_HEADER, "").strip()
        if owner.startswith("profile:"):
            name = owner.split(":", 1)[1]
            if asked and asked != name:
                return Refusal(400, "invalid_request_error",
                               f"X-Broke-Profile '{asked}': a token of profile '{name}' cannot switch profiles",
                               "bad_profile")
            return self._profile_client(name, narrowed=False)
        if asked:
            return self._profile_client(asked, narrowed=True)
        return Client(owner, None)

    def _profile_client(self, name: str, *, narrowed: bool) -> Client | Refusal:
        try:
            preset = profiles(self.home).get(name).preset
        except Exception as exc:  # a deleted or broken profile locks its token out, not the gateway
            if narrowed:
                return Refusal(400, "invalid_request_error", f"X-Broke-Profile '{name}': {exc}", "bad_profile")
            return Refusal(403, "permission_error", f"profile '{name}' is unusable: {exc}", "bad_profile")
        return Client(f"profile:{name}", Scope(name, preset.access), narrowed, preset.budget,
                      preset.on_budget)
