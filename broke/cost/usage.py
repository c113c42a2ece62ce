"""Token usage by kind, read from an answer in its client API's own shape, and each API's formula.

- Anthropic Messages: `input_tokens` excludes the cache: `cache_read_input_tokens` and
  `cache_creation_input_tokens` are counted besides it.
- OpenAI Chat Completions: `prompt_tokens` includes `prompt_tokens_details.cached_tokens` (and, from
  LiteLLM's Anthropic translation, `cache_creation_input_tokens`): fresh input is what is left.
- OpenAI Responses: `input_tokens` includes `input_tokens_details.cached_tokens`.
- Google generateContent: `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount`
  is the output.

Numbers are found with one regular expression over the bytes (no JSON parse on the request path); a
stream is fed chunk by chunk, each field keeping its largest value (Anthropic's message_start and
message_delta, a chat stream's usage chunk and Responses' response.completed all hold running totals).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_FIELDS = re.compile(rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens|cached_tokens|'
                     rb'cache_read_input_tokens|cache_creation_input_tokens|'
                     rb'promptTokenCount|candidatesTokenCount|cachedContentTokenCount)"\s*:\s*(\d+)')
#: Bytes of one chunk kept for the next, so that a field split between two chunks is still read.
_CARRY = 64

CHAT, MESSAGES, RESPONSES = "/v1/chat/completions", "/v1/messages", "/v1/responses"
GEMINI = "/v1beta/"  # Google's generateContent paths


@dataclass(frozen=True)
class Usage:
    """Tokens of one answer by how they are priced: fresh input, output, cache reads, cache writes."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write


def usage_of(path: str, found: dict[bytes, int]) -> Usage | None:
    """The usage an answer of client API `path` reported (None: it said nothing)."""
    if not found:
        return None
    output = found.get(b"output_tokens", found.get(b"completion_tokens", 0))
    if path.startswith(GEMINI):
        cached = found.get(b"cachedContentTokenCount", 0)
        return Usage(max(found.get(b"promptTokenCount", 0) - cached, 0), found.get(b"candidatesTokenCount", 0), cached)
    if path == MESSAGES:
        return Usage(found.get(b"input_tokens", 0), output, found.get(b"cache_read_input_tokens", 0),
                     found.get(b"cache_creation_input_tokens", 0))
    cached = found.get(b"cached_tokens", found.get(b"cache_read_input_tokens", 0))
    written = found.get(b"cache_creation_input_tokens", 0)
    prompt = found.get(b"prompt_tokens", found.get(b"input_tokens", 0))
    return Usage(max(prompt - cached - written, 0), output, cached, written)


class UsageMeter:
    """Reads the usage of one answer: `whole` for a body, `feed` chunk by chunk for a stream."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: dict[bytes, int] = {}
        self._carry = b""

    def _scan(self, data: bytes) -> None:
        found = self.found
        for name, value in _FIELDS.findall(data):
            number = int(value)
            if number > found.get(name, -1):
                found[name] = number

    def whole(self, data: bytes) -> Usage | None:
        self._scan(data)
        return self.usage

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        if b"_tokens" in data or b"TokenCount" in data:
            self._scan(data)
        self._carry = data[-_CARRY:]

    @property
    def usage(self) -> Usage | None:
        return usage_of(self.path, self.found)


def asks_stream_usage(path: str, payload: dict[str, Any]) -> bool:
    """Whether a streamed chat completion needs `stream_options.include_usage` added to report its usage."""
    if path != CHAT or payload.get("stream") is not True:
        return False
    options = payload.get("stream_options")
    return not (isinstance(options, dict) and options.get("include_usage") is True)


def with_stream_usage(payload: dict[str, Any]) -> dict[str, Any]:
    """The body with the upstream asked to report a stream's usage (its last chunk, stripped again)."""
    options = payload.get("stream_options")
    return {**payload, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}


def without_usage_chunk(lines: bytes) -> bytes:
    """Complete SSE lines of a chat stream without the usage-only chunk (`"choices":[]` with `usage`)
    that broke asked the upstream for and the client did not. The blank line that ended it stays: an
    SSE event with no data is ignored by every client."""
    if b'"usage"' not in lines:
        return lines
    return b"\n".join(line for line in lines.split(b"\n")
                      if not (line.startswith(b"data:") and b'"usage"' in line
                              and (b'"choices":[]' in line or b'"choices": []' in line)))
