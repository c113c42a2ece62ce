"""Sliding-window limits: failed authentications per address, requests and tokens per client."""
from __future__ import annotations

from collections import defaultdict, deque

WINDOW_S = 60.0


class FailedAuthLimiter:
    """After `limit` bad tokens from one address within a minute, that address gets 429s."""

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures[address]
        while times and times[0] <= now - WINDOW_S:
            times.popleft()
        return times

    def blocked(self, address: str, now: float) -> bool:
        return len(self._recent(address, now)) >= self.limit

    def fail(self, address: str, now: float) -> None:
        self._recent(address, now).append(now)


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
            self.tokens[owner].append((now, count))
