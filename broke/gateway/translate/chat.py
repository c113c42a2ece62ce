"""What both translations read from and write to OpenAI chat completions: a chat answer's parts
(reasoning, text, tool calls), its usage, its stream as a sequence of pieces, and error messages."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Usage:
    """Tokens of one answer: input not read from cache, input read from cache, output, of which reasoning."""

    fresh: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From a chat completion's `usage` (cached input under prompt_tokens_details)."""
        if not isinstance(usage, dict):
            return cls()
        details = usage.get("prompt_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        reasoning = int(out_details.get("reasoning_tokens") or 0) if isinstance(out_details, dict) else 0
        prompt = int(usage.get("prompt_tokens") or 0)
        return cls(max(prompt - cached, 0), cached, int(usage.get("completion_tokens") or 0), reasoning)


@dataclass(frozen=True)
class Call:
    """One tool call of a chat answer (arguments as the JSON text the model wrote)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Piece:
    """One thing a chat stream chunk says: reasoning or text (`text`), a tool call's start (`call`
    with its id and name) or a piece of its arguments (`text`), keyed by the call's `index`."""

    kind: str  # "reasoning" | "text" | "call" | "arguments"
    text: str = ""
    index: int = 0
    call_id: str = ""
    name: str = ""


def reasoning_of(message: dict[str, Any]) -> str:
    """The reasoning text of a chat message or delta (`reasoning_content`, or `reasoning` as some servers say)."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


def calls_of(message: dict[str, Any]) -> list[Call]:
    """The tool calls of a whole chat message."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        calls.append(Call(str(call.get("id") or ""), str(function.get("name") or ""),
                          str(function.get("arguments") or "")))
    return calls


def pieces(chunk: dict[str, Any], opened: set[int]) -> Iterator[Piece]:
    """What one chat stream chunk says, in order; `opened` holds the tool call indexes already started."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        reasoning = reasoning_of(delta)
        if reasoning:
            yield Piece("reasoning", reasoning)
        if isinstance(delta.get("content"), str) and delta["content"]:
            yield Piece("text", delta["content"])
        for call in delta.get("tool_calls") or []:
            index = int(call.get("index") or 0)
            function = call.get("function") or {}
            if index not in opened:
                opened.add(index)
                yield Piece("call", index=index, call_id=str(call.get("id") or f"call_{index}"),
                            name=str(function.get("name") or ""))
            if function.get("arguments"):
                yield Piece("arguments", function["arguments"], index=index)


def finish_of(chunk: dict[str, Any]) -> str | None:
    """The finish reason a chat stream chunk (or answer) gives, if any."""
    for choice in chunk.get("choices") or []:
        if choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None


def error_message(body: bytes) -> str:
    """The message of an upstream's error body, whatever its shape (else the body's start)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace") or "upstream error"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        return parsed["detail"]
    return body[:500].decode("utf-8", "replace")


def image_part(url: str) -> dict[str, Any]:
    """A chat image content part."""
    return {"type": "image_url", "image_url": {"url": url}}


def arguments_object(text: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object ({} when empty; the raw text kept when not an object)."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def assistant_of_blocks(blocks: Any, *, answered: bool) -> dict[str, Any]:
    """Anthropic content blocks as a chat assistant message: text, thinking as reasoning text, tool uses as
    tool calls. With no text, an answer's content is null; a request's is "" unless it calls tools."""
    text, reasoning, calls = [], [], []
    for block in blocks or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function", "function": {
                "name": block.get("name", ""), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(text) or (None if answered or calls else "")}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message
