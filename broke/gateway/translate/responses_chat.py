"""OpenAI Responses (Codex) ⇄ OpenAI chat completions: the request one way, the answer, its stream
and its errors the other.

Codex sends its whole history as input items (it keeps no state at the provider): messages,
function calls and their outputs, custom tool calls (a free-form `input`, carried in chat as a
function with one string argument `input`), and reasoning items. Reasoning comes back as a
reasoning item with its text as a summary and no encrypted content (that belongs to the provider
that made it); sent back, its summary text becomes the next assistant message's `reasoning_content`.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from broke.errors import InvalidInputError
from broke.gateway.translate.chat import (
    Call,
    Usage,
    calls_of,
    error_message,
    finish_of,
    image_part,
    pieces,
    reasoning_of,
)
from broke.gateway.translate.sse import DONE, ChatEvents, event

#: Request fields passed on as they are.
KEPT = ("temperature", "top_p", "stream", "parallel_tool_calls")
#: The one argument a custom (free-form) tool gets as a chat function.
CUSTOM_INPUT = "input"


# ---- the request ------------------------------------------------------------------------------

def _parts(content: Any) -> Any:
    """Responses content as chat content (a plain string when it is all text)."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append(image_part(part["image_url"]))
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


class _History:
    """Input items gathered into chat messages: consecutive calls (and the text and reasoning before
    them) make one assistant message; their outputs follow as tool messages, images after them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reasoning = ""  # a reasoning item's text, for the assistant message that comes next
        self.images: list[dict[str, Any]] = []  # images tool outputs carried, for a user message after them

    def _assistant(self) -> dict[str, Any]:
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant" or last.get("_closed"):
            last = {"role": "assistant", "content": None}
            self.messages.append(last)
        if self.reasoning:
            last["reasoning_content"] = (last.get("reasoning_content") or "") + self.reasoning
            self.reasoning = ""
        return last

    def _flush_images(self) -> None:
        if self.images:
            self.messages.append({"role": "user", "content": self.images})
            self.images = []

    def add(self, item: dict[str, Any]) -> None:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            content = _parts(item.get("content"))
            if role == "assistant":
                message = self._assistant()
                if message.get("tool_calls"):  # words after calls start a new message
                    message["_closed"] = True
                    message = self._assistant()
                message["content"] = (message["content"] or "") + (content if isinstance(content, str) else "")
                return
            self._close()
            self._flush_images()
            self.messages.append({"role": "system" if role in ("system", "developer") else "user", "content": content})
        elif kind == "reasoning":
            summary = item.get("summary") or item.get("content") or []
            self.reasoning += "".join(s.get("text", "") for s in summary if isinstance(s, dict))
        elif kind in ("function_call", "custom_tool_call"):
            arguments = item.get("arguments", "") if kind == "function_call" \
                else orjson.dumps({CUSTOM_INPUT: item.get("input", "")}).decode()
            call = {"id": item.get("call_id", ""), "type": "function",
                    "function": {"name": item.get("name", ""), "arguments": arguments}}
            self._assistant().setdefault("tool_calls", []).append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._close()
            output = _parts(item.get("output"))
            if not isinstance(output, str):
                self.images += [p for p in output if p["type"] == "image_url"]
                output = "".join(p["text"] for p in output if p["type"] == "text")
            self.messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": output})

    def _close(self) -> None:
        if self.messages and self.messages[-1]["role"] == "assistant":
            self.messages[-1]["_closed"] = True

    def done(self) -> list[dict[str, Any]]:
        self._flush_images()
        return [{k: v for k, v in m.items() if k != "_closed"} for m in self.messages]


def _tools(tools: Any) -> list[dict[str, Any]]:
    """Function and custom tools as chat functions (hosted tools, such as web_search, left out)."""
    out = []
    for tool in tools or []:
        if not isinstance(tool, dict) or not tool.get("name"):
            continue
        if tool.get("type") == "function":
            out.append({"type": "function", "function": {
                "name": tool["name"], "description": tool.get("description") or "",
                "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}})
        elif tool.get("type") == "custom":
            out.append({"type": "function", "function": {
                "name": tool["name"], "description": tool.get("description") or "",
                "parameters": {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}},
                               "required": [CUSTOM_INPUT]}}})
    return out


def custom_tools(payload: dict[str, Any]) -> frozenset[str]:
    """The names of the request's custom (free-form) tools."""
    return frozenset(t.get("name", "") for t in payload.get("tools") or []
                     if isinstance(t, dict) and t.get("type") == "custom")


def to_chat(payload: dict[str, Any], *, limit_field: str = "max_tokens") -> dict[str, Any]:
    """A Responses request as a chat completion request. Fields a chat backend does not know
    (store, include, prompt_cache_key, metadata, …) are left out. A request that continues a stored
    response (`previous_response_id`) is refused: broke keeps no responses to continue."""
    if payload.get("previous_response_id"):
        raise InvalidInputError("previous_response_id: this backend is reached through broke's translation, "
                                "which stores no responses; send the whole conversation as input (store: false)")
    history = _History()
    if payload.get("instructions"):
        history.messages.append({"role": "system", "content": str(payload["instructions"])})
    given = payload.get("input")
    items = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given or []
    for item in items:
        if isinstance(item, dict):
            history.add(item)
    body: dict[str, Any] = {"model": payload.get("model"), "messages": history.done()}
    body.update({k: payload[k] for k in KEPT if k in payload})
    if payload.get("max_output_tokens") is not None:
        body[limit_field] = payload["max_output_tokens"]
    tools = _tools(payload.get("tools"))
    if tools:
        body["tools"] = tools
        choice = payload.get("tool_choice")
        if isinstance(choice, str):
            body["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("name"):
            body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        body.pop("parallel_tool_calls", None)
    effort = (payload.get("reasoning") or {}).get("effort") if isinstance(payload.get("reasoning"), dict) else None
    if effort in ("low", "medium", "high"):
        body["reasoning_effort"] = effort
    text_format = (payload.get("text") or {}).get("format") if isinstance(payload.get("text"), dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {
            k: text_format[k] for k in ("name", "schema", "strict", "description") if k in text_format}}
    elif isinstance(text_format, dict) and text_format.get("type") == "json_object":
        body["response_format"] = {"type": "json_object"}
    if payload.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return body


# ---- the answer -------------------------------------------------------------------------------

def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _usage(usage: Usage) -> dict[str, Any]:
    total_in = usage.fresh + usage.cached
    return {"input_tokens": total_in, "input_tokens_details": {"cached_tokens": usage.cached},
            "output_tokens": usage.output, "output_tokens_details": {"reasoning_tokens": usage.reasoning},
            "total_tokens": total_in + usage.output}


def _reasoning_item(text: str, item_id: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}]}


def _message_item(text: str, item_id: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _call_item(call: Call, item_id: str, custom: frozenset[str]) -> dict[str, Any]:
    if call.name in custom:
        try:
            value = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            value = {CUSTOM_INPUT: call.arguments}
        given = value.get(CUSTOM_INPUT, "") if isinstance(value, dict) else call.arguments
        return {"type": "custom_tool_call", "id": item_id, "status": "completed", "call_id": call.id,
                "name": call.name, "input": given if isinstance(given, str) else orjson.dumps(given).decode()}
    return {"type": "function_call", "id": item_id, "status": "completed", "call_id": call.id,
            "name": call.name, "arguments": call.arguments}


def _response(model: str, response_id: str, output: list[dict[str, Any]], usage: Usage | None,
              finish: str | None, status: str = "completed") -> dict[str, Any]:
    incomplete = finish == "length" and status == "completed"
    return {"id": response_id, "object": "response", "created_at": int(time.time()),
            "status": "incomplete" if incomplete else status, "model": model, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": _usage(usage) if usage is not None else None}


def from_chat(answer: dict[str, Any], model: str, custom: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A whole chat completion as a Responses answer, under the model the client asked for."""
    message = ((answer.get("choices") or [{}])[0]).get("message") or {}
    output: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        output.append(_reasoning_item(reasoning, _id("rs")))
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(_message_item(message["content"], _id("msg")))
    output += [_call_item(call, _id("fc"), custom) for call in calls_of(message)]
    return _response(model, _id("resp"), output, Usage.of(answer.get("usage")), finish_of(answer))


def error(status: int, body: bytes) -> bytes:
    """An upstream's error as OpenAI's error body (the shape Responses clients read)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return orjson.dumps({"error": {"message": error_message(body), "type": kind, "code": str(status)}})


class Stream:
    """A chat completion stream as Responses stream events: created, one output item per reasoning
    run, text run or tool call (each call's arguments as delta pieces, parallel calls as their own
    items), then `response.completed` with every item at `[DONE]`."""

    def __init__(self, model: str, custom: frozenset[str] = frozenset()) -> None:
        self.model, self.custom = model, custom
        self.events = ChatEvents()
        self.response_id = _id("resp")
        self.number = 0  # the next sequence number
        self.started = self.ended = False
        self.output: list[dict[str, Any] | None] = []  # finished items by output index (None: still open)
        self.open: tuple[str, int, str, list[str]] | None = None  # reasoning or text: kind, index, id, text so far
        self.calls: dict[int, tuple[int, Call]] = {}  # tool call index -> (output index, call so far)
        self.ids: dict[int, str] = {}  # tool call items' ids by output index
        self.opened: set[int] = set()
        self.finish: str | None = None
        self.usage = Usage()

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(e) for e in self.events.feed(chunk))

    def flush(self) -> bytes:
        return b"".join(self._on(e) for e in self.events.flush())

    def _emit(self, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self.number
        self.number += 1
        return event(data["type"], data)

    def _on(self, chunk: Any) -> bytes:
        if self.ended:
            return b""
        out = [] if self.started else self._start()
        self.started = True
        if chunk is DONE:
            return b"".join(out) + self._end()
        if "error" in chunk and not chunk.get("choices"):
            self.ended = True
            failed = _response(self.model, self.response_id, [], None, None, "failed")
            failed["error"] = {"code": "server_error", "message": error_message(orjson.dumps(chunk))}
            return b"".join(out) + self._emit({"type": "response.failed", "response": failed})
        for piece in pieces(chunk, self.opened):
            if piece.kind in ("reasoning", "text"):
                out.append(self._run(piece.kind, piece.text))
            elif piece.kind == "call":
                out.append(self._close_run())
                index, call = len(self.output), Call(piece.call_id, piece.name, "")
                self.output.append(None)
                item = {**_call_item(call, _id("fc"), self.custom), "status": "in_progress"}
                self.calls[piece.index] = (index, call)
                self.ids[index] = item["id"]
                out.append(self._emit({"type": "response.output_item.added", "output_index": index, "item": item}))
            else:
                index, call = self.calls[piece.index]
                self.calls[piece.index] = (index, Call(call.id, call.name, call.arguments + piece.text))
                if call.name not in self.custom:  # a custom tool's input is sent whole when it ends
                    out.append(self._emit({"type": "response.function_call_arguments.delta",
                                           "item_id": self.ids[index], "output_index": index, "delta": piece.text}))
        self.finish = finish_of(chunk) or self.finish
        if chunk.get("usage"):
            self.usage = Usage.of(chunk["usage"])
        return b"".join(out)

    def _start(self) -> list[bytes]:
        begun = _response(self.model, self.response_id, [], None, None, "in_progress")
        return [self._emit({"type": "response.created", "response": begun}),
                self._emit({"type": "response.in_progress", "response": begun})]

    def _run(self, kind: str, text: str) -> bytes:
        out = b""
        if self.open is None or self.open[0] != kind:
            out = self._close_run()
            index, item_id = len(self.output), _id("rs" if kind == "reasoning" else "msg")
            self.output.append(None)
            self.open = (kind, index, item_id, [])
            if kind == "reasoning":
                item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
                where = {"item_id": item_id, "output_index": index, "summary_index": 0}
                opening = {"type": "response.reasoning_summary_part.added", **where,
                           "part": {"type": "summary_text", "text": ""}}
            else:
                item = {**_message_item("", item_id, "in_progress"), "content": []}
                where = {"item_id": item_id, "output_index": index, "content_index": 0}
                opening = {"type": "response.content_part.added", **where,
                           "part": {"type": "output_text", "text": "", "annotations": []}}
            out += self._emit({"type": "response.output_item.added", "output_index": index, "item": item})
            out += self._emit(opening)
        kind, index, item_id, said = self.open
        said.append(text)
        if kind == "reasoning":
            return out + self._emit({"type": "response.reasoning_summary_text.delta", "item_id": item_id,
                                     "output_index": index, "summary_index": 0, "delta": text})
        return out + self._emit({"type": "response.output_text.delta", "item_id": item_id, "output_index": index,
                                 "content_index": 0, "delta": text, "logprobs": []})

    def _close_run(self) -> bytes:
        if self.open is None:
            return b""
        kind, index, item_id, said = self.open
        self.open, text = None, "".join(said)
        if kind == "reasoning":
            item = _reasoning_item(text, item_id)
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            out = self._emit({"type": "response.reasoning_summary_text.done", **where, "text": text})
            out += self._emit({"type": "response.reasoning_summary_part.done", **where,
                               "part": {"type": "summary_text", "text": text}})
        else:
            item = _message_item(text, item_id)
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            out = self._emit({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
            out += self._emit({"type": "response.content_part.done", **where, "part": item["content"][0]})
        self.output[index] = item
        return out + self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    def _close_call(self, index: int, call: Call) -> bytes:
        item = _call_item(call, self.ids[index], self.custom)
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "custom_tool_call":
            out = self._emit({"type": "response.custom_tool_call_input.delta", **where, "delta": item["input"]})
            out += self._emit({"type": "response.custom_tool_call_input.done", **where, "input": item["input"]})
        else:
            out = self._emit({"type": "response.function_call_arguments.done", **where, "arguments": call.arguments})
        self.output[index] = item
        return out + self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    def _end(self) -> bytes:
        self.ended = True
        out = [self._close_run(), *(self._close_call(index, call) for index, call in self.calls.values())]
        done = _response(self.model, self.response_id, [i for i in self.output if i is not None], self.usage,
                         self.finish)
        kind = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
        out.append(self._emit({"type": kind, "response": done}))
        return b"".join(out)
