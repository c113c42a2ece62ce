"""broke's own translation between a client's API and a backend's, one module per pair:
Anthropic Messages ⇄ chat completions (messages_chat) and Responses ⇄ chat completions
(responses_chat). `Translation` is one request's: the body for the backend, then the answer, its
stream or its error rewritten for the client, under the model the client asked for."""
from __future__ import annotations

from typing import Any

import orjson

from broke.gateway.translate import messages_chat, responses_chat


class Translation:
    """One request from a Messages or Responses client on its way to a chat completions backend."""

    def __init__(self, api: str, payload: dict[str, Any], *, limit_field: str = "max_tokens") -> None:
        self.api, self.model = api, str(payload.get("model"))
        self.custom = responses_chat.custom_tools(payload) if api == "responses" else frozenset()
        if api == "messages":
            self.body = messages_chat.to_chat(payload, limit_field=limit_field)
            self.stream: messages_chat.Stream | responses_chat.Stream = messages_chat.Stream(self.model)
        else:
            self.body = responses_chat.to_chat(payload, limit_field=limit_field)
            self.stream = responses_chat.Stream(self.model, self.custom)

    def whole(self, data: bytes) -> bytes:
        """A whole chat completion as the client's answer."""
        answer = orjson.loads(data)
        if self.api == "messages":
            return orjson.dumps(messages_chat.from_chat(answer, self.model))
        return orjson.dumps(responses_chat.from_chat(answer, self.model, self.custom))

    def feed(self, chunk: bytes) -> bytes:
        """The client's events for the chat stream so far."""
        return self.stream.feed(chunk)

    def flush(self) -> bytes:
        """The client's events for what is held when the chat stream ends."""
        return self.stream.flush()

    def error(self, status: int, body: bytes) -> bytes:
        """An error answer in the client API's own shape."""
        return messages_chat.error(status, body) if self.api == "messages" else responses_chat.error(status, body)
