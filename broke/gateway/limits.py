"""Sliding-window limits: failed authentications per address and in all, requests and tokens per
client; and the size of a request's headers."""
from __future__ import annotations

from collections import defaultdict, deque

WINDOW_S = 60.0


#: A request's headers: at most this many, of at most this many bytes in all (names and values).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


def header_problem(headers: list[tuple[bytes, bytes]]) -> str:
    """Why a request's headers are refused (431), or "" when they are within the limits."""
    if len(headers) > MAX_HEADERS:
        return f"more than {MAX_HEADERS} request headers"
    if sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
        return f"request headers over {MAX_HEADER_BYTES} bytes"
    return ""


class FailedAuthLimiter:
    """After `limit` bad tokens from one address within a minute, that address gets 429s; after
    `global_limit` from all addresses together (a caller can use every 127.x address), every
    request without a valid token does."""

    def __init__(self, limit: int = 10, global_limit: int = 50) -> None:
        self.limit = limit
        self.global_limit = global_limit
        self.failures: dict[str, deque[float]] = defaultdict(deque)
        self.all_failures: deque[float] = deque()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures[address]
        while times and times[0] <= now - WINDOW_S:
            times.popleft()
        return times

    def _all_recent(self, now: float) -> deque[float]:
        while self.all_failures and self.all_failures[0] <= now - WINDOW_S:
            self.all_failures.popleft()
        return self.all_failures

    def blocked(self, address: str, now: float) -> bool:
        return (len(self._recent(address, now)) >= self.limit
                or len(self._all_recent(now)) >= self.global_limit)

    def fail(self, address: str, now: float) -> None:
        self._recent(address, now).append(now)
        self._all_recent(now).append(now)
        for stale in [a for a, times in self.failures.items() if times[-1] <= now - WINDOW_S]:
            del self.failures[stale]  # addresses whose failures have all expired (bounded memory)


class RateLimiter:
    """Requests and tokens per minute per owner; 0 means unlimited."""

    def __init__(self) -> None:
        self.requests: dict[str, deque[float]] = defaultdict(deque)
        self.tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def check(self, limits: list[tuple[str, int, int]], now: float) -> str:
        """"" when the request may go under every (owner, rpm, tpm) of `limits`, else why not.

        The request is counted for every owner, or (refused) for none.
        """
        for owner, rpm, tpm in limits:
            requests, tokens = self.requests[owner], self.tokens[owner]
            while requests and requests[0] <= now - WINDOW_S:
                requests.popleft()
            while tokens and tokens[0][0] <= now - WINDOW_S:
                tokens.popleft()
            if rpm and len(requests) >= rpm:
                return f"rate limit: {rpm} requests per minute"
            if tpm and sum(n for _, n in tokens) >= tpm:
                return f"rate limit: {tpm} tokens per minute"
        for owner, _, _ in limits:
            self.requests[owner].append(now)
        return ""

    def spent(self, owner: str, count: int, now: float) -> None:
        if count > 0:
            tokens = self.tokens[owner]
            tokens.append((now, count))
            while tokens[0][0] <= now - WINDOW_S:  # counted all along, checked only without Redis: bounded here
                tokens.popleft()
