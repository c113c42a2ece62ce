"""Google generateContent (Gemini CLI) ⇄ OpenAI chat completions: the request one way, the answer,
its two stream forms (`alt=sse`, or one JSON array) and its errors the other, and token counts
estimated where the backend cannot count.

Function calls without an id (older Gemini clients send none) get `call_N`, and a function response
without one answers the oldest open call of its name. Thoughts come back as `thought: true` parts.
"""
from __future__ import annotations

import uuid
from typing import Any

import orjson

from broke.errors import InvalidInputError
from broke.gateway.translate.chat import (
    Usage,
    arguments_object,
    calls_of,
    error_message,
    finish_of,
    image_part,
    pieces,
    reasoning_of,
)
from broke.gateway.translate.sse import DONE, ChatEvents

#: The private request field naming the stream form the client asked for: "sse" or "json" (an array).
STREAM_FORM = "broke_stream_form"
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "function_call": "STOP",
          "content_filter": "SAFETY"}
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
          500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
CALLING_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none"}


# ---- the request ------------------------------------------------------------------------------

def _schema(value: Any) -> Any:
    """A Gemini (OpenAPI-style) schema as JSON Schema: type names in lower case."""
    if isinstance(value, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _schema(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_schema(v) for v in value]
    return value


def _media(mime: str, where: str) -> dict[str, Any]:
    if not mime.startswith("image/"):
        raise InvalidInputError(f"a {mime or 'non-image'} part cannot be sent to a chat backend (only images); "
                                "send it as text or choose a Gemini backend for this slot")
    return image_part(where)


class _Ids:
    """Ids for function calls that carry none, matched to the responses that follow them."""

    def __init__(self) -> None:
        self.count, self.open = 0, {}  # type: int, dict[str, list[str]]

    def call(self, name: str, given: Any) -> str:
        self.count += 1
        call_id = str(given) if given else f"call_{self.count}"
        self.open.setdefault(name, []).append(call_id)
        return call_id

    def response(self, name: str, given: Any) -> str:
        waiting = self.open.get(name) or []
        if given:
            if str(given) in waiting:
                waiting.remove(str(given))
            return str(given)
        return waiting.pop(0) if waiting else f"call_{name}"


def _turn(content: dict[str, Any], ids: _Ids) -> list[dict[str, Any]]:
    """One Gemini content as chat messages: a model turn, or a user turn's tool results then its words."""
    parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
    if content.get("role") == "model":
        text: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in parts:
            if "functionCall" in part:
                call = part["functionCall"] or {}
                name = str(call.get("name") or "")
                calls.append({"id": ids.call(name, call.get("id")), "type": "function", "function": {
                    "name": name, "arguments": orjson.dumps(call.get("args") or {}).decode()}})
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else text).append(part["text"])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or (None if calls else "")}
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        if calls:
            message["tool_calls"] = calls
        return [message]
    messages: list[dict[str, Any]] = []
    own: list[dict[str, Any]] = []
    for part in parts:
        if "functionResponse" in part:
            answer = part["functionResponse"] or {}
            name = str(answer.get("name") or "")
            messages.append({"role": "tool", "tool_call_id": ids.response(name, answer.get("id")),
                             "content": orjson.dumps(answer.get("response") or {}).decode()})
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            own.append({"type": "text", "text": part["text"]})
        elif "inlineData" in part:
            data = part["inlineData"] or {}
            mime = str(data.get("mimeType") or "")
            own.append(_media(mime, f"data:{mime};base64,{data.get('data', '')}"))
        elif "fileData" in part:
            data = part["fileData"] or {}
            own.append(_media(str(data.get("mimeType") or ""), str(data.get("fileUri") or "")))
    if own:
        plain = all(p["type"] == "text" for p in own)
        messages.append({"role": "user", "content": "".join(p["text"] for p in own) if plain else own})
    return messages


def _system(instruction: Any) -> str:
    if isinstance(instruction, str):
        return instruction
    if isinstance(instruction, dict):
        return "\n".join(str(p.get("text", "")) for p in instruction.get("parts") or [] if isinstance(p, dict))
    return ""


def _tools(tools: Any) -> list[dict[str, Any]]:
    """Function declarations as chat functions (Google's own tools, search and code execution, are left out)."""
    functions = []
    for tool in tools or []:
        for declared in (tool.get("functionDeclarations") or []) if isinstance(tool, dict) else []:
            schema = declared.get("parametersJsonSchema") or _schema(declared.get("parameters")) \
                or {"type": "object", "properties": {}}
            functions.append({"type": "function", "function": {
                "name": declared.get("name", ""), "description": declared.get("description", ""),
                "parameters": schema}})
    return functions


def _tool_choice(config: Any) -> Any:
    calling = (config or {}).get("functionCallingConfig") or {} if isinstance(config, dict) else {}
    allowed = calling.get("allowedFunctionNames") or []
    if calling.get("mode") == "ANY" and len(allowed) == 1:
        return {"type": "function", "function": {"name": allowed[0]}}
    return CALLING_MODES.get(str(calling.get("mode") or "AUTO"), "auto")


def _generation(config: Any, body: dict[str, Any], limit_field: str) -> None:
    """generationConfig's sampling, limits and JSON output onto the chat body."""
    if not isinstance(config, dict):
        return
    for theirs, ours in (("temperature", "temperature"), ("topP", "top_p"), ("seed", "seed"),
                         ("presencePenalty", "presence_penalty"), ("frequencyPenalty", "frequency_penalty")):
        if config.get(theirs) is not None:
            body[ours] = config[theirs]
    if config.get("maxOutputTokens") is not None:
        body[limit_field] = config["maxOutputTokens"]
    if config.get("stopSequences"):
        body["stop"] = config["stopSequences"]
    schema = config.get("responseJsonSchema") or _schema(config.get("responseSchema"))
    if schema:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    elif config.get("responseMimeType") == "application/json":
        body["response_format"] = {"type": "json_object"}


def to_chat(payload: dict[str, Any], *, limit_field: str = "max_tokens") -> dict[str, Any]:
    """A generateContent request as a chat completion request (safety settings and cached content are
    left out: a chat backend has neither)."""
    messages: list[dict[str, Any]] = []
    system = _system(payload.get("systemInstruction") or payload.get("system_instruction"))
    if system:
        messages.append({"role": "system", "content": system})
    ids = _Ids()
    for content in payload.get("contents") or []:
        if isinstance(content, dict):
            messages += _turn(content, ids)
    body: dict[str, Any] = {"model": payload.get("model"), "messages": messages}
    _generation(payload.get("generationConfig"), body, limit_field)
    tools = _tools(payload.get("tools"))
    if tools:
        body["tools"] = tools
        body["tool_choice"] = _tool_choice(payload.get("toolConfig"))
    if payload.get("stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def count_estimate(payload: dict[str, Any]) -> dict[str, int]:
    """countTokens for a backend that cannot count: about four bytes of JSON per token."""
    inner = payload.get("generateContentRequest")
    source = inner if isinstance(inner, dict) else payload
    counted = {k: source[k] for k in ("systemInstruction", "contents", "tools") if k in source}
    return {"totalTokens": max(1, len(orjson.dumps(counted)) // 4)}


# ---- the answer -------------------------------------------------------------------------------

def _usage(usage: Usage) -> dict[str, int]:
    prompt = usage.fresh + usage.cached
    metadata = {"promptTokenCount": prompt, "candidatesTokenCount": usage.output,
                "totalTokenCount": prompt + usage.output}
    if usage.cached:
        metadata["cachedContentTokenCount"] = usage.cached
    if usage.reasoning:
        metadata["thoughtsTokenCount"] = usage.reasoning
    return metadata


def _call_part(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"functionCall": {"id": call_id, "name": name, "args": arguments_object(arguments)}}


def _response(parts: list[dict[str, Any]], model: str, response_id: str, finish: str | None = None,
              usage: Usage | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = FINISH.get(finish, "OTHER")
    answer: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
    if usage is not None:
        answer["usageMetadata"] = _usage(usage)
    return answer


def from_chat(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole chat completion as a generateContent answer, under the model the client asked for."""
    message = (answer.get("choices") or [{}])[0].get("message") or {}
    parts: list[dict[str, Any]] = []
    if reasoning_of(message):
        parts.append({"text": reasoning_of(message), "thought": True})
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append({"text": message["content"]})
    parts += [_call_part(c.id or f"call_{i}", c.name, c.arguments) for i, c in enumerate(calls_of(message))]
    return _response(parts or [{"text": ""}], model, str(answer.get("id") or uuid.uuid4().hex),
                     finish_of(answer) or "stop", Usage.of(answer.get("usage")))


def error(status: int, body: bytes) -> bytes:
    """An error answer in Google's shape."""
    return orjson.dumps({"error": {"code": status, "message": error_message(body),
                                   "status": STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")}})


class Stream:
    """A chat completion stream rewritten as generateContent chunks: text and thoughts as they come,
    function calls whole (with the finish reason and usage) when the chat stream ends."""

    def __init__(self, model: str, form: str = "sse") -> None:
        self.model, self.sse = model, form == "sse"
        self.events = ChatEvents()
        self.id = uuid.uuid4().hex
        self.opened: set[int] = set()
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self.finish: str | None = None
        self.usage = Usage()
        self.sent = 0  # chunks written
        self.ended = False

    def _write(self, answer: dict[str, Any]) -> bytes:
        data = orjson.dumps(answer)
        self.sent += 1
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self.sent == 1 else b",\r\n") + data

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(e) for e in self.events.feed(chunk))

    def flush(self) -> bytes:
        out = b"".join(self._on(e) for e in self.events.flush())
        if not self.ended:
            out += self._end()
        if not self.sse:
            out += b"]" if self.sent else b"[]"
        return out

    def _on(self, item: Any) -> bytes:
        if self.ended:
            return b""
        if item is DONE:
            return self._end()
        if item.get("usage"):
            self.usage = Usage.of(item["usage"])
        self.finish = finish_of(item) or self.finish
        parts: list[dict[str, Any]] = []
        for piece in pieces(item, self.opened):
            if piece.kind == "call":
                self.calls[piece.index] = [piece.call_id, piece.name, ""]
            elif piece.kind == "arguments":
                self.calls[piece.index][2] += piece.text
            elif parts and parts[-1].get("thought", False) == (piece.kind == "reasoning"):
                parts[-1]["text"] += piece.text
            else:
                parts.append({"text": piece.text, "thought": True} if piece.kind == "reasoning"
                             else {"text": piece.text})
        return self._write(_response(parts, self.model, self.id)) if parts else b""

    def _end(self) -> bytes:
        self.ended = True
        parts = [_call_part(*self.calls[i]) for i in sorted(self.calls)] or [{"text": ""}]
        return self._write(_response(parts, self.model, self.id, self.finish or "stop", self.usage))
