"""Dashboard logins: browser sessions (kept in the front proxy's memory), one-time login links, and the
checks that keep other sites and other hosts out."""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

#: How long a browser stays logged in (a gateway restart logs everyone out).
SESSION_TTL_S = 12 * 3600.0
#: How long a one-time login link from `broke dashboard` can be used.
LINK_TTL_S = 60.0
COOKIE = "broke_session"
#: Host names the dashboard answers to: a page reached by another name (DNS rebinding) is refused.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Session:
    csrf: str  # sent back by the page in a header with every change
    expires: float


class Sessions:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._links: dict[str, float] = {}  # one-time code -> expiry

    def create(self, now: float) -> tuple[str, Session]:
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(24), now + SESSION_TTL_S)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        session = self._sessions.get(session_id or "")
        return session if session and session.expires > now else None

    def end(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def new_link(self, now: float) -> str:
        self._links = {k: t for k, t in self._links.items() if t > now}
        code = secrets.token_urlsafe(32)
        self._links[code] = now + LINK_TTL_S
        return code

    def redeem(self, code: str, now: float) -> bool:
        """A link's code logs in once, within its minute."""
        expires = self._links.pop(code, 0.0)
        return expires > now


def host_allowed(host_header: str) -> bool:
    """The request was addressed to a loopback name (not to a foreign name that resolves to 127.0.0.1)."""
    host = urlsplit(f"//{host_header}").hostname or ""
    return host in LOOPBACK_HOSTS


def same_origin(origin: str | None, host_header: str) -> bool:
    """A browser's Origin names this very page's scheme and host (a missing Origin is not a browser's)."""
    if origin is None:
        return True
    return origin == f"http://{host_header}"


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, given or "")
