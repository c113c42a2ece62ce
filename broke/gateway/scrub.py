"""Secrets kept out of the answers broke passes on: an upstream's error may echo the key it was sent
(or LiteLLM's master key, a node's token, the client's own token); before such a body or its headers
reach a client, every secret the front proxy holds and every credential of the request is masked."""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

import orjson

MASK = b"[redacted]"
#: Shorter values are not treated as secrets (masking them would garble ordinary text).
MIN_SECRET = 6
AUTH_HEADERS = ("authorization", "x-api-key", "api-key", "proxy-authorization", "x-goog-api-key")


def credentials(headers: Mapping[str, str]) -> list[str]:
    """The secrets a request's auth headers carry: the whole value and a bearer scheme's token."""
    found: list[str] = []
    for name in AUTH_HEADERS:
        value = headers.get(name)
        if value:
            found.append(value.strip())
            scheme, _, token = value.strip().partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                found.append(token.strip())
    return found


class Scrubber:
    """Masks a fixed set of secrets in bytes, in their raw and JSON-escaped spellings. What to look for
    is worked out on first use: a request that succeeds never pays for it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._raw = tuple(secrets)

    @functools.cached_property
    def _secrets(self) -> list[bytes]:
        spellings: set[bytes] = set()
        for secret in self._raw:
            if len(secret) >= MIN_SECRET:
                spellings.update({secret.encode("utf-8", "replace"), orjson.dumps(secret)[1:-1]})
        return sorted(spellings, key=len, reverse=True)  # longest first: a token inside a header value

    def with_request(self, headers: Mapping[str, str]) -> Scrubber:
        """This scrubber plus the credentials of one request."""
        return Scrubber((*self._raw, *credentials(headers)))

    def bytes(self, data: bytes) -> bytes:
        """`data` with every secret masked."""
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, MASK)
        return data

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Header values with every secret masked."""
        return {k: self.bytes(v.encode("utf-8", "replace")).decode("utf-8", "replace") for k, v in headers.items()}
