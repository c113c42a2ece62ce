"""Bodies on the wire: error answers, request encoding, Anthropic's thinking rule kept (the usage an
answer reports is read by broke.cost.usage)."""
from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import JSONResponse

from broke.routing.transport import WORKER_MODEL


def error_body(status: int, code: str, message: str) -> JSONResponse:
    """An OpenAI-style error (Anthropic clients read `error.message` too)."""
    return JSONResponse({"error": {"message": message, "type": code, "code": code}}, status_code=status)


def encode(payload: object) -> bytes:
    """JSON bytes of a request body (orjson; the standard library for integers orjson refuses)."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload).encode("utf-8")


def without_unkept_thinking(payload: dict[str, Any]) -> dict[str, Any]:
    """A Messages request as Anthropic accepts it: with thinking on, a final assistant message that
    calls a tool must start with the thinking its model signed. A conversation that reached an
    Anthropic backend in the middle of a tool loop (a swap, a failover) carries none, so that turn
    goes without thinking rather than fail; the next prompt thinks again."""
    thinking = payload.get("thinking")
    messages = payload.get("messages")
    if not isinstance(thinking, dict) or thinking.get("type") == "disabled" or not isinstance(messages, list):
        return payload
    said = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    blocks = said[-1].get("content") if said else None
    if not isinstance(blocks, list) or not blocks:
        return payload
    kinds = [b.get("type") for b in blocks if isinstance(b, dict)]
    if "tool_use" not in kinds or kinds[0] in ("thinking", "redacted_thinking"):
        return payload
    return {k: v for k, v in payload.items() if k != "thinking"}


class ModelStamp:
    """Rewrites the `model` an answer names (the deployment broke asked for, or the provider's own
    name for it) to the model the client asked for: clients compare them (Claude Code drops its
    thinking from the history when an answer names another model), and deployment names, with
    their key variables, stay inside broke.

    A local model's answer may also name the model its worker answers to (`default_model`), when
    LiteLLM passes the worker's name on (its streamed Responses events do): `local` covers that.

    Streams are rewritten line by line: a partial line is held until its end arrives, which costs
    nothing a client could use (SSE events end with a blank line).
    """

    def __init__(self, names: tuple[str, ...], requested: str, *, local: bool = False) -> None:
        new = encode(requested)  # JSON strings, quoted and escaped
        names = (*names, WORKER_MODEL) if local else names
        self._pairs = [(key + encode(name), key + new) for name in dict.fromkeys(names) if name != requested
                       for key in (b'"model":', b'"model": ')]
        self._held = b""

    def whole(self, data: bytes) -> bytes:
        """A complete answer body."""
        for old, new in self._pairs:
            data = data.replace(old, new)
        return data

    def feed(self, chunk: bytes) -> bytes:
        """The complete lines of a stream so far (the rest is held)."""
        data = self._held + chunk
        cut = data.rfind(b"\n") + 1
        self._held = data[cut:]
        return self.whole(data[:cut]) if cut else b""

    def flush(self) -> bytes:
        """What is held when the stream ends."""
        data, self._held = self._held, b""
        return self.whole(data)
