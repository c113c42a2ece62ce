"""OpenAI chat completions ⇄ Anthropic Messages, for a chat client (or a Responses client, through
chat) on an Anthropic backend: the request one way, the answer, its stream and its errors the other.

Anthropic keeps one system prompt: system (and developer) messages are gathered into it in order.
Reasoning text a chat client sends back carries no signature, so it is not sent to Anthropic as
thinking (Anthropic would refuse it); wire.without_unkept_thinking then lets that turn go without
thinking. Anthropic's thinking comes back as `reasoning_content`.
"""
from __future__ import annotations

import uuid
from typing import Any

import orjson

from broke.gateway.translate.chat import arguments_object, assistant_of_blocks, error_message
from broke.gateway.translate.sse import DONE, ChatEvents

#: A chat request without a limit gets this one (Anthropic requires max_tokens).
DEFAULT_MAX_TOKENS = 4096
#: Reasoning effort -> Anthropic's thinking budget (tokens).
BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "refusal": "content_filter"}
ERROR_TYPES = {"invalid_request_error": "invalid_request_error", "authentication_error": "invalid_api_key",
               "rate_limit_error": "rate_limit_exceeded", "overloaded_error": "server_error"}


# ---- the request ------------------------------------------------------------------------------

def _block(part: Any) -> dict[str, Any] | None:
    """An Anthropic content block of a chat content part."""
    if not isinstance(part, dict):
        return None
    if part.get("type") == "text":
        return {"type": "text", "text": part.get("text", "")}
    if part.get("type") == "image_url":
        url = str((part.get("image_url") or {}).get("url", ""))
        if url.startswith("data:") and ";base64," in url:
            media, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [b for b in (_block(p) for p in content or []) if b is not None]


def _text(content: Any) -> str:
    return "".join(b["text"] for b in _blocks(content) if b["type"] == "text")


def _add(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merged into the previous one of the same role (Anthropic wants them alternating)."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"] += blocks
    else:
        messages.append({"role": role, "content": blocks})


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        picked: dict[str, Any] = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    elif choice in ("auto", "required", "none"):
        picked = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif parallel is False:
        picked = {"type": "auto"}
    else:
        return None
    if parallel is False and picked["type"] != "none":
        picked["disable_parallel_tool_use"] = True
    return picked


def to_messages(payload: dict[str, Any]) -> dict[str, Any]:
    """A chat completion request as a Messages request. Fields Anthropic does not know (n,
    response_format, logprobs, seed, user, …) are left out."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system += [b for b in _blocks(message.get("content")) if b["type"] == "text"]
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                               "name": function.get("name", ""),
                               "input": arguments_object(str(function.get("arguments") or ""))})
            _add(messages, "assistant", blocks)
        elif role == "tool":
            result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                      "content": _blocks(message.get("content")) or ""}
            _add(messages, "user", [result])
        else:
            _add(messages, "user", _blocks(message.get("content")))
    body: dict[str, Any] = {"model": payload.get("model"), "messages": messages}
    if system:
        body["system"] = system
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens") or DEFAULT_MAX_TOKENS
    body["max_tokens"] = limit
    for name in ("temperature", "top_p", "stream"):
        if name in payload:
            body[name] = payload[name]
    if payload.get("stop"):
        body["stop_sequences"] = [payload["stop"]] if isinstance(payload["stop"], str) else payload["stop"]
    tools = [{"name": (t.get("function") or {}).get("name", ""),
              "description": (t.get("function") or {}).get("description", ""),
              "input_schema": (t.get("function") or {}).get("parameters") or {"type": "object", "properties": {}}}
             for t in payload.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice
    budget = BUDGETS.get(str(payload.get("reasoning_effort")))
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body["max_tokens"] = max(int(limit), budget + 1024)
        body.pop("temperature", None)  # Anthropic takes no temperature with thinking
    return body


# ---- the answer -------------------------------------------------------------------------------

def _usage(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}
    cached = int(usage.get("cache_read_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached + int(usage.get("cache_creation_input_tokens") or 0)
    output = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cached}}


def from_messages(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole Messages answer as a chat completion, under the model the client asked for."""
    message = assistant_of_blocks(answer.get("content"), answered=True)
    return {"id": f"chatcmpl-{answer.get('id') or uuid.uuid4().hex}", "object": "chat.completion", "created": 0,
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                         "finish_reason": FINISH.get(str(answer.get("stop_reason")), "stop")}],
            "usage": _usage(answer.get("usage"))}


def error(status: int, body: bytes) -> bytes:
    """An Anthropic error as OpenAI's error body."""
    try:
        parsed = orjson.loads(body)
        kind = str(((parsed.get("error") or {}) if isinstance(parsed, dict) else {}).get("type") or "")
    except orjson.JSONDecodeError:
        kind = ""
    code = ERROR_TYPES.get(kind, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": error_message(body), "type": kind or code, "code": code}})


class Stream:
    """A Messages event stream as chat completion chunks (SSE bytes): role, reasoning, text, tool calls
    (arguments in their pieces, by call index), the finish reason, usage, then `[DONE]`."""

    def __init__(self, model: str, *, usage: bool = True) -> None:
        self.model, self.with_usage = model, usage
        self.events = ChatEvents()  # Anthropic names each event in its data too: the data lines suffice
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.calls: dict[int, int] = {}  # Anthropic block index -> chat tool call index
        self.usage: dict[str, Any] = {}
        self.ended = False

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        data = {"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                "choices": choices, **extra}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(e) for e in self.events.feed(chunk))

    def flush(self) -> bytes:
        return b"".join(self._on(e) for e in self.events.flush())

    def _on(self, event: Any) -> bytes:
        if self.ended or event is DONE:
            return b""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.usage.update(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") != "tool_use":
                return b""
            index = self.calls[int(event.get("index") or 0)] = len(self.calls)
            return self._chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                                "function": {"name": block.get("name", ""), "arguments": ""}}]})
        if kind == "content_block_delta":
            return self._delta(int(event.get("index") or 0), event.get("delta") or {})
        if kind == "message_delta":
            self.usage.update(event.get("usage") or {})
            reason = (event.get("delta") or {}).get("stop_reason")
            return self._chunk({}, FINISH.get(str(reason), "stop")) if reason else b""
        if kind == "message_stop":
            self.ended = True
            usage = self._chunk(None, usage=_usage(self.usage)) if self.with_usage else b""
            return usage + b"data: [DONE]\n\n"
        if kind == "error":
            self.ended = True
            return b"data: " + orjson.dumps({"error": event.get("error") or {}}) + b"\n\n"
        return b""

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        kind = delta.get("type")
        if kind == "text_delta":
            return self._chunk({"content": delta.get("text", "")})
        if kind == "thinking_delta":
            return self._chunk({"reasoning_content": delta.get("thinking", "")})
        if kind == "input_json_delta" and index in self.calls:
            return self._chunk({"tool_calls": [{"index": self.calls[index],
                                                "function": {"arguments": delta.get("partial_json", "")}}]})
        return b""

