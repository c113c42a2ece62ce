"""Anthropic Messages (Claude Code) ⇄ OpenAI chat completions: the request one way, the answer,
its stream and its errors the other, and token counts estimated where the backend cannot count.

Thinking goes to the backend as its text (`reasoning_content`), never with a signature; reasoning
a backend returns comes back as a thinking block signed `SIGNATURE` (broke's, not Anthropic's), so
that the native Anthropic path can tell it apart and leave it out (wire.without_translated_thinking).
"""
from __future__ import annotations

import uuid
from typing import Any

import orjson

from broke.gateway.translate.chat import (
    Usage,
    arguments_object,
    assistant_of_blocks,
    calls_of,
    error_message,
    finish_of,
    image_part,
    pieces,
    reasoning_of,
)
from broke.gateway.translate.sse import DONE, ChatEvents, event
from broke.gateway.wire import TRANSLATED_SIGNATURE

SIGNATURE = TRANSLATED_SIGNATURE
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
#: Thinking budget (tokens) -> the chat API's reasoning effort, the first bound that holds it.
EFFORTS = ((2048, "low"), (8192, "medium"))
#: Request fields passed on as they are.
KEPT = ("temperature", "top_p", "stream")


# ---- the request ------------------------------------------------------------------------------

def _text(content: Any) -> str:
    """The text of a string or of a list of text blocks."""
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _image(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        return image_part(f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}")
    if source.get("type") == "url":
        return image_part(str(source.get("url", "")))
    return None


def _parts(blocks: list[Any]) -> list[dict[str, Any]]:
    """Chat content parts of Anthropic text, image and text-document blocks."""
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            image = _image(block)
            if image:
                parts.append(image)
        elif kind == "document" and (block.get("source") or {}).get("type") == "text":
            parts.append({"type": "text", "text": block["source"].get("data", "")})
    return parts


def _content(parts: list[dict[str, Any]]) -> Any:
    """Parts as chat content: a plain string when they are all text (what every server reads)."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _user(blocks: Any) -> list[dict[str, Any]]:
    """A user turn: its tool results as tool messages first (chat wants them right after the call),
    then its own words and images, and the images tool results carried."""
    if isinstance(blocks, str):
        return [{"role": "user", "content": blocks}]
    messages: list[dict[str, Any]] = []
    rest: list[Any] = []
    images: list[dict[str, Any]] = []
    for block in blocks or []:
        if not isinstance(block, dict) or block.get("type") != "tool_result":
            rest.append(block)
            continue
        inner = block.get("content")
        inner_parts = [{"type": "text", "text": inner}] if isinstance(inner, str) else _parts(inner or [])
        text = "".join(p["text"] for p in inner_parts if p["type"] == "text")
        images += [p for p in inner_parts if p["type"] == "image_url"]
        if block.get("is_error"):
            text = f"Error: {text}"
        messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
    parts = _parts(rest) + images
    if parts:
        messages.append({"role": "user", "content": _content(parts)})
    return messages


def _assistant(blocks: Any) -> dict[str, Any]:
    """An assistant turn: its text, its thinking as reasoning text, its tool calls."""
    if isinstance(blocks, str):
        return {"role": "assistant", "content": blocks}
    return assistant_of_blocks(blocks, answered=False)


def _tools(tools: Any) -> list[dict[str, Any]]:
    """Client tools as chat functions (Anthropic's server tools, which have a `type`, are left out)."""
    return [{"type": "function", "function": {
        "name": t["name"], "description": t.get("description", ""),
        "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}}
        for t in tools or [] if isinstance(t, dict) and t.get("type") in (None, "custom") and t.get("name")]


def _tool_choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return {"any": "required", "none": "none"}.get(kind or "", "auto")


def _effort(thinking: Any, output_config: Any) -> str | None:
    """The reasoning effort of Anthropic's thinking: by budget, or as output_config says for adaptive thinking."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    if thinking.get("type") == "adaptive":
        said = output_config.get("effort") if isinstance(output_config, dict) else None
        return said if said in ("low", "medium", "high") else "medium"
    budget = int(thinking.get("budget_tokens") or 0) or 16384
    return next((effort for bound, effort in EFFORTS if budget <= bound), "high")


def to_chat(payload: dict[str, Any], *, limit_field: str = "max_tokens") -> dict[str, Any]:
    """A Messages request as a chat completion request. Fields a chat backend does not know
    (metadata, cache_control, output_config, top_k, …) are left out."""
    messages: list[dict[str, Any]] = []
    system = _text(payload.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "assistant":
            messages.append(_assistant(message.get("content")))
        elif role == "system":  # kept a system message wherever it stands
            messages.append({"role": "system", "content": _text(message.get("content"))})
        else:
            messages += _user(message.get("content"))
    body: dict[str, Any] = {"model": payload.get("model"), "messages": messages}
    body.update({k: payload[k] for k in KEPT if k in payload})
    if payload.get("max_tokens") is not None:
        body[limit_field] = payload["max_tokens"]
    if payload.get("stop_sequences"):
        body["stop"] = payload["stop_sequences"]
    tools = _tools(payload.get("tools"))
    if tools:
        body["tools"] = tools
        choice = payload.get("tool_choice")
        if choice:
            body["tool_choice"] = _tool_choice(choice)
            if isinstance(choice, dict) and choice.get("disable_parallel_tool_use"):
                body["parallel_tool_calls"] = False
    effort = _effort(payload.get("thinking"), payload.get("output_config"))
    if effort:
        body["reasoning_effort"] = effort
    if payload.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return body


def count_estimate(payload: dict[str, Any]) -> dict[str, int]:
    """count_tokens for a backend that cannot count: about four bytes of JSON per token."""
    counted = {k: payload[k] for k in ("system", "messages", "tools") if k in payload}
    return {"input_tokens": max(1, len(orjson.dumps(counted)) // 4)}


# ---- the answer -------------------------------------------------------------------------------

def _usage(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.fresh, "cache_read_input_tokens": usage.cached,
            "cache_creation_input_tokens": 0, "output_tokens": usage.output}


def from_chat(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole chat completion as a Messages answer, under the model the client asked for."""
    choices = answer.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": SIGNATURE})
    if message.get("content"):
        content.append({"type": "text", "text": _text(message["content"])})
    for call in calls_of(message):
        content.append({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}", "name": call.name,
                        "input": arguments_object(call.arguments)})
    stop = STOP_REASONS.get(finish_of(answer) or "stop", "end_turn")
    if any(b["type"] == "tool_use" for b in content):
        stop = "tool_use"
    return {"id": f"msg_{answer.get('id') or uuid.uuid4().hex}", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": _usage(Usage.of(answer.get("usage")))}


def error(status: int, body: bytes) -> bytes:
    """An upstream's error as Anthropic's error body."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": error_message(body)}})


class Stream:
    """A chat completion stream as Messages stream events: message_start, one content block per
    reasoning run, text run or tool call (each tool call's arguments as input_json_delta pieces, parallel
    calls in their own blocks), then message_delta (stop reason, usage) and message_stop at `[DONE]`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.events = ChatEvents()
        self.started = self.ended = False
        self.blocks = 0  # blocks opened so far
        self.open: tuple[str, int] | None = None  # the open reasoning or text block: (kind, index)
        self.calls: dict[int, int] = {}  # tool call index -> its block index (open until the end)
        self.opened: set[int] = set()
        self.stop = "end_turn"
        self.usage = Usage()

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(e) for e in self.events.feed(chunk))

    def flush(self) -> bytes:
        return b"".join(self._on(e) for e in self.events.flush())

    def _on(self, chunk: Any) -> bytes:
        if self.ended:
            return b""
        if chunk is DONE:
            return self._end()
        if "error" in chunk and not chunk.get("choices"):
            self.ended = True
            message = error_message(orjson.dumps(chunk))
            return event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
        out = [] if self.started else [self._start(chunk)]
        self.started = True
        for piece in pieces(chunk, self.opened):
            if piece.kind in ("reasoning", "text"):
                out.append(self._run(piece.kind, piece.text))
            elif piece.kind == "call":
                out.append(self._close_run())
                self.calls[piece.index] = self.blocks
                block = {"type": "tool_use", "id": piece.call_id, "name": piece.name, "input": {}}
                out.append(event("content_block_start", {"type": "content_block_start", "index": self.blocks,
                                                         "content_block": block}))
                self.blocks += 1
            else:
                out.append(self._delta(self.calls[piece.index], {"type": "input_json_delta",
                                                                 "partial_json": piece.text}))
        finish = finish_of(chunk)
        if finish:
            self.stop = STOP_REASONS.get(finish, "end_turn")
        if chunk.get("usage"):
            self.usage = Usage.of(chunk["usage"])
        return b"".join(out)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        message: dict[str, Any] = {"id": f"msg_{chunk.get('id') or uuid.uuid4().hex}", "type": "message",
                   "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": _usage(Usage())}
        return event("message_start", {"type": "message_start", "message": message})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _run(self, kind: str, text: str) -> bytes:
        """Reasoning or text, in the open block of its kind or a new one."""
        out = b""
        if self.open is None or self.open[0] != kind:
            out = self._close_run()
            self.open = (kind, self.blocks)
            block = {"type": "thinking", "thinking": "", "signature": ""} if kind == "reasoning" \
                else {"type": "text", "text": ""}
            out += event("content_block_start", {"type": "content_block_start", "index": self.blocks,
                                                 "content_block": block})
            self.blocks += 1
        delta = {"type": "thinking_delta", "thinking": text} if kind == "reasoning" \
            else {"type": "text_delta", "text": text}
        return out + self._delta(self.open[1], delta)

    def _close_run(self) -> bytes:
        if self.open is None:
            return b""
        kind, index = self.open
        self.open = None
        out = self._delta(index, {"type": "signature_delta", "signature": SIGNATURE}) if kind == "reasoning" else b""
        return out + event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _end(self) -> bytes:
        self.ended = True
        out = [b"" if self.started else self._start({}), self._close_run()]
        out += [event("content_block_stop", {"type": "content_block_stop", "index": i}) for i in self.calls.values()]
        stop = "tool_use" if self.calls and self.stop == "end_turn" else self.stop
        out.append(event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": stop, "stop_sequence": None},
                                           "usage": _usage(self.usage)}))
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)


