"""Server-sent events on the wire: a chat completion stream read event by event, events written back."""
from __future__ import annotations

from typing import Any

import orjson

#: The last event of a chat completion stream.
DONE = object()


class ChatEvents:
    """Splits a chat completion stream into its data payloads, whatever the chunking: parsed JSON
    objects, or DONE for `[DONE]` (a partial line is held until its end arrives)."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, chunk: bytes) -> list[Any]:
        """The events completed by `chunk`."""
        data = self._held + chunk
        cut = data.rfind(b"\n") + 1
        self._held = data[cut:]
        return self._parse(data[:cut])

    def flush(self) -> list[Any]:
        """The events of what is held when the stream ends."""
        data, self._held = self._held, b""
        return self._parse(data)

    @staticmethod
    def _parse(data: bytes) -> list[Any]:
        events: list[Any] = []
        for line in data.splitlines():
            if not line.startswith(b"data:"):
                continue
            value = line[5:].strip()
            if value == b"[DONE]":
                events.append(DONE)
                continue
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                events.append(parsed)
        return events


def event(name: str, data: dict[str, Any]) -> bytes:
    """One named SSE event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
