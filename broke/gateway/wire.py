"""Bodies on the wire: error answers, request encoding, and the token usage an answer reports."""
from __future__ import annotations

import json
import re

import orjson
from starlette.responses import JSONResponse

_USAGE = re.compile(rb'"(total_tokens|input_tokens|output_tokens)"\s*:\s*(\d+)')


def error_body(status: int, code: str, message: str) -> JSONResponse:
    """An OpenAI-style error (Anthropic clients read `error.message` too)."""
    return JSONResponse({"error": {"message": message, "type": code, "code": code}}, status_code=status)


def encode(payload: dict) -> bytes:
    """JSON bytes of a request body (orjson; the standard library for integers orjson refuses)."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload).encode("utf-8")


def usage_tokens(data: bytes) -> int:
    """Tokens a response reports using (total, else input + output); 0 when it says nothing."""
    found: dict[bytes, int] = {}
    for name, value in _USAGE.findall(data):
        found[name] = max(found.get(name, 0), int(value))
    return found.get(b"total_tokens") or found.get(b"input_tokens", 0) + found.get(b"output_tokens", 0)
