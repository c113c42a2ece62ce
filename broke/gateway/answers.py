"""An answer as a judge reads it (judged.py): its text, then each tool call as a line
`[tool call] NAME(ARGUMENTS)`, read from a whole body or from a stream as it passes, in any of the three
client APIs (chat completions, Anthropic Messages, Responses). At most TEXT_LIMIT characters are kept,
each call's arguments cut at ARGUMENTS_LIMIT; reasoning is left out."""
from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

from broke.gateway.translate.sse import DONE, ChatEvents

CHAT, MESSAGES, RESPONSES = "/v1/chat/completions", "/v1/messages", "/v1/responses"
#: The client APIs whose answers are read.
APIS = (CHAT, MESSAGES, RESPONSES)
#: Characters of an answer kept in all (text, tool names and arguments).
TEXT_LIMIT = 16_000
#: Characters of one tool call's arguments kept.
ARGUMENTS_LIMIT = 2_000
_CUT = "…"


class Answer:
    """The text and tool calls of one answer read so far, within the limits."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[Any, list[str]] = {}  # call key (its index in the answer) -> [name, arguments]
        self.room = TEXT_LIMIT

    def _kept(self, text: str, room: int) -> str:
        kept = text[:max(min(room, self.room), 0)]
        self.room -= len(kept)
        return kept

    def add_text(self, text: Any) -> None:
        if isinstance(text, str) and text and self.room > 0:
            self.text.append(self._kept(text, self.room))

    def add_call(self, key: Any, name: Any, arguments: Any = "") -> None:
        if isinstance(name, str) and key not in self.calls and self.room > 0:
            self.calls[key] = [self._kept(name, self.room), ""]
            self.add_arguments(key, arguments)

    def add_arguments(self, key: Any, text: Any) -> None:
        call = self.calls.get(key)
        if call is None or not isinstance(text, str) or not text:
            return
        room = ARGUMENTS_LIMIT + 1 - len(call[1])  # one more than kept: a cut call is shown cut
        call[1] += self._kept(text, room)

    def rendered(self) -> str | None:
        """The answer for a judge, None if it has neither text nor tool calls."""
        text = "".join(self.text).strip()
        lines = [text] if text else []
        for name, arguments in self.calls.values():
            shown = arguments[:ARGUMENTS_LIMIT] + _CUT if len(arguments) > ARGUMENTS_LIMIT else arguments
            lines.append(f"[tool call] {name}({shown})")
        return "\n".join(lines) or None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in _list(value) if isinstance(item, dict)]


def whole(path: str, body: bytes) -> str | None:
    """A whole answer's body of client API `path` rendered for a judge (None: nothing to judge)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    answer = Answer()
    if path == CHAT:
        choices = _dicts(data.get("choices"))
        message = choices[0].get("message") if choices else None
        if isinstance(message, dict):
            content = message.get("content")
            for text in [content] if isinstance(content, str) else [p.get("text") for p in _dicts(content)]:
                answer.add_text(text)
            for index, call in enumerate(_dicts(message.get("tool_calls"))):
                function = _dict(call.get("function"))
                answer.add_call(index, function.get("name"), function.get("arguments"))
    elif path == MESSAGES:
        for index, block in enumerate(_dicts(data.get("content"))):
            if block.get("type") == "text":
                answer.add_text(block.get("text"))
            elif block.get("type") == "tool_use":
                answer.add_call(index, block.get("name"), orjson.dumps(block.get("input")).decode())
    elif path == RESPONSES:
        for index, item in enumerate(_dicts(data.get("output"))):
            if item.get("type") == "message":
                for part in _dicts(item.get("content")):
                    if part.get("type") == "output_text":
                        answer.add_text(part.get("text"))
            elif item.get("type") in ("function_call", "custom_tool_call"):
                answer.add_call(index, item.get("name"), item.get("arguments") or item.get("input"))
    return answer.rendered()


class Capture:
    """A stream of client API `path` read as it passes to the client (`passing`): the answer, once the
    stream ended with its API's last event and no error."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.events = ChatEvents()
        self.read = Answer()
        self.ended = self.failed = False

    async def passing(self, chunks: AsyncIterable[Any]) -> AsyncIterator[Any]:
        """`chunks` unchanged, each read after it went on (a client that leaves stops the reading)."""
        async for chunk in chunks:
            yield chunk
            if isinstance(chunk, bytes):
                self.feed(chunk)
        self._on_all(self.events.flush())

    def feed(self, chunk: bytes) -> None:
        self._on_all(self.events.feed(chunk))

    def answer(self) -> str | None:
        """The answer rendered for a judge; None if the stream did not end well or said nothing."""
        return self.read.rendered() if self.ended and not self.failed else None

    def _on_all(self, events: list[Any]) -> None:
        on = {CHAT: self._chat, MESSAGES: self._messages, RESPONSES: self._responses}[self.path]
        for event in events:
            if event is DONE:
                self.ended = True
            elif event.get("type") == "error" or ("error" in event and not event.get("choices")):
                self.failed = True
            else:
                on(event)

    def _chat(self, event: dict[str, Any]) -> None:
        choices = _dicts(event.get("choices"))
        if not choices:
            return
        delta = choices[0].get("delta")
        if isinstance(delta, dict):
            self.read.add_text(delta.get("content"))
            for call in _dicts(delta.get("tool_calls")):
                function = _dict(call.get("function"))
                key = call.get("index", 0)
                self.read.add_call(key, function.get("name"))  # named in its first piece only
                self.read.add_arguments(key, function.get("arguments"))
        if choices[0].get("finish_reason"):
            self.ended = True

    def _messages(self, event: dict[str, Any]) -> None:
        kind, key = event.get("type"), event.get("index")
        if kind == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                self.read.add_call(key, block.get("name"))
        elif kind == "content_block_delta":
            delta = _dict(event.get("delta"))
            if delta.get("type") == "text_delta":
                self.read.add_text(delta.get("text"))
            elif delta.get("type") == "input_json_delta":
                self.read.add_arguments(key, delta.get("partial_json"))
        elif kind == "message_stop":
            self.ended = True

    def _responses(self, event: dict[str, Any]) -> None:
        kind, key = event.get("type"), event.get("output_index")
        if kind == "response.output_text.delta":
            self.read.add_text(event.get("delta"))
        elif kind == "response.output_item.added":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") in ("function_call", "custom_tool_call"):
                self.read.add_call(key, item.get("name"), item.get("arguments") or item.get("input"))
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            self.read.add_arguments(key, event.get("delta"))
        elif kind in ("response.completed", "response.incomplete"):
            self.ended = True
        elif kind == "response.failed":
            self.failed = True
