"""broke's own translation between a client's API and a backend's, one module per pair:
Anthropic Messages ⇄ chat completions (messages_chat), Responses ⇄ chat completions
(responses_chat), Google generateContent ⇄ chat completions (gemini_chat) and chat completions ⇄
Anthropic Messages (chat_messages); a Responses or Gemini client on an Anthropic backend goes through
chat completions, two hops. `Translation` is one request's: the body for
the backend, then the answer, its stream or its error rewritten for the client, under the model the
client asked for."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from broke.gateway.translate import chat_messages, gemini_chat, messages_chat, responses_chat


def count_estimate(client: str, payload: dict[str, Any]) -> dict[str, int]:
    """A token count for a backend that cannot count, in the client API's shape (Anthropic's or Google's)."""
    return gemini_chat.count_estimate(payload) if client == "gemini" else messages_chat.count_estimate(payload)


class _Stream(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass
class _Hop:
    """One step of an answer's way back: a whole answer, a stream, an error, each rewritten."""

    whole: Callable[[dict[str, Any]], dict[str, Any]]
    stream: _Stream
    error: Callable[[int, bytes], bytes]


class Translation:
    """One request from a client API to a backend API that differs (a pair in routing.transport.TRANSLATES)."""

    def __init__(self, client: str, backend: str, payload: dict[str, Any], *, limit_field: str = "max_tokens") -> None:
        model = str(payload.get("model"))
        custom = responses_chat.custom_tools(payload) if client == "responses" else frozenset()
        hops: list[_Hop] = []  # backend side first
        if client == "messages":
            body = messages_chat.to_chat(payload, limit_field=limit_field)
            hops.append(_Hop(lambda a: messages_chat.from_chat(a, model), messages_chat.Stream(model),
                             messages_chat.error))
        elif client == "responses":
            body = responses_chat.to_chat(payload, limit_field=limit_field)
            hops.append(_Hop(lambda a: responses_chat.from_chat(a, model, custom),
                             responses_chat.Stream(model, custom), responses_chat.error))
        elif client == "gemini":
            body = gemini_chat.to_chat(payload, limit_field=limit_field)
            form = str(payload.get(gemini_chat.STREAM_FORM) or "sse")
            hops.append(_Hop(lambda a: gemini_chat.from_chat(a, model), gemini_chat.Stream(model, form),
                             gemini_chat.error))
        else:
            body = payload
        if backend == "messages":
            asked_usage = bool((payload.get("stream_options") or {}).get("include_usage")) or client != "chat"
            body = chat_messages.to_messages(body)
            hops.insert(0, _Hop(lambda a: chat_messages.from_messages(a, model),
                                chat_messages.Stream(model, usage=asked_usage), chat_messages.error))
        self.body, self.hops = body, hops

    def whole(self, data: bytes) -> bytes:
        """A whole answer of the backend as the client's answer."""
        answer = orjson.loads(data)
        for hop in self.hops:
            answer = hop.whole(answer)
        return orjson.dumps(answer)

    def feed(self, chunk: bytes) -> bytes:
        """The client's events for the backend's stream so far."""
        for hop in self.hops:
            chunk = hop.stream.feed(chunk)
        return chunk

    def flush(self) -> bytes:
        """The client's events for what is held when the backend's stream ends."""
        data = b""
        for hop in self.hops:
            data = hop.stream.feed(data) + hop.stream.flush()
        return data

    def error(self, status: int, body: bytes) -> bytes:
        """An error answer in the client API's own shape."""
        for hop in self.hops:
            body = hop.error(status, body)
        return body
