"""Scripted conversations for the fake provider: reading requests and writing answers in each API's shape.

Three APIs: OpenAI Chat Completions (``chat``), Anthropic Messages (``messages``) and OpenAI
Responses (``responses``). A script is a list of steps for one turn of a conversation:

    Script([ToolCall("Write", {"file_path": "/tmp/x", "content": "marker"}), Reply("done")])

The step answering a request is picked by how many tool results the request carries after its
last user prompt: none -> the first step, one -> the second, and so on. A ``ToolCall`` step only
applies when the request offers a tool of that name (a client's side requests, such as title
generation, offer none and get the default answer). Everything here is pure: the HTTP side is in
fake_provider.py.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

CHAT, MESSAGES, RESPONSES = "chat", "messages", "responses"
#: The thinking text the fake sends when a request asks for reasoning.
THINKING_TEXT = "fake thinking: the user wants a file"
#: How the opaque reasoning the fake hands out (Responses ``encrypted_content``) begins.
ENCRYPTED_PREFIX = "fakeenc"
#: The blocks Anthropic accepts at the start of an assistant message that calls a tool while thinking.
THINKING_BLOCKS = ("thinking", "redacted_thinking")
#: The size of the pieces a tool call's JSON arguments are streamed in.
ARGUMENT_FRAGMENT = 7


@dataclass(frozen=True)
class ToolCall:
    """A step: ask the client to call tool ``name`` with ``arguments``."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """A step: answer with ``text``."""

    text: str


Step = ToolCall | Reply


@dataclass(frozen=True)
class Script:
    """The steps of one turn, for requests to ``model`` (``None``: any model)."""

    steps: list[Step]
    model: str | None = None

    def step_for(self, api: str, payload: dict[str, Any]) -> Step | None:
        """The step that answers this request, or ``None`` (the fake's default answer)."""
        done = len(tool_results(api, payload, current_turn=True))
        if done >= len(self.steps):
            return None
        step = self.steps[done]
        if isinstance(step, ToolCall) and step.name not in tool_names(api, payload):
            return None
        return step


@dataclass
class Answer:
    """What the fake sends back for one request, whatever the API."""

    model: str
    text: str = ""
    tool_call: ToolCall | None = None
    thinking: bool = False
    prompt_tokens: int = 0
    #: Prompt tokens served from the provider's cache, and written to it (reported in each API's own shape)
    cache_read: int = 0
    cache_write: int = 0
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:16]}")

    @property
    def output_tokens(self) -> int:
        return max(1, len(self.text.split()) + (len(self.arguments_json) // 4 if self.tool_call else 0))

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.tool_call.arguments) if self.tool_call else ""

    def fragments(self) -> list[str]:
        """The tool call's JSON arguments cut in pieces, as providers stream them."""
        text = self.arguments_json
        return [text[i:i + ARGUMENT_FRAGMENT] for i in range(0, len(text), ARGUMENT_FRAGMENT)]


# ---- reading requests -------------------------------------------------------------------------

def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text_of(content: Any) -> str:
    """Text of a string, or of the text parts of a list of content parts/blocks."""
    if isinstance(content, str):
        return content
    parts = [part.get("text") for part in _list(content) if isinstance(part, dict)]
    return " ".join(part for part in parts if isinstance(part, str))


def _items(api: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation's messages (chat, messages) or input items (responses)."""
    key = "input" if api == RESPONSES else "messages"
    value = payload.get(key)
    if api == RESPONSES and isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return [item for item in _list(value) if isinstance(item, dict)]


def _is_prompt(api: str, item: dict[str, Any]) -> bool:
    """A user message with the user's own words (not one carrying tool results)."""
    if item.get("role") != "user":
        return False
    content = item.get("content")
    if api == MESSAGES and isinstance(content, list):
        return not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    return True


def _current_turn(api: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    starts = [index for index, item in enumerate(items) if _is_prompt(api, item)]
    return items[starts[-1]:] if starts else items


def tool_results(api: str, payload: dict[str, Any], *, current_turn: bool = False) -> list[str]:
    """The text of every tool result in the request (only after the last prompt if ``current_turn``)."""
    items = _items(api, payload)
    if current_turn:
        items = _current_turn(api, items)
    found: list[str] = []
    for item in items:
        if api == CHAT and item.get("role") == "tool":
            found.append(_text_of(item.get("content")))
        elif api == MESSAGES and item.get("role") == "user":
            found += [_text_of(block.get("content")) for block in _list(item.get("content"))
                      if isinstance(block, dict) and block.get("type") == "tool_result"]
        elif api == RESPONSES and item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            found.append(output if isinstance(output, str) else _text_of(output))
    return found


def tool_names(api: str, payload: dict[str, Any]) -> list[str]:
    """The names of the tools the request offers."""
    names = []
    for tool in _list(payload.get("tools")):
        if not isinstance(tool, dict):
            continue
        name = tool.get("function", {}).get("name") if api == CHAT else tool.get("name")
        if isinstance(name, str):
            names.append(name)
    return names


def prompt_text(api: str, payload: dict[str, Any]) -> str:
    """The text of the user messages, joined by newlines."""
    return "\n".join(_text_of(item.get("content")) for item in _items(api, payload)
                     if item.get("role") == "user")


def prompt_words(api: str, payload: dict[str, Any]) -> int:
    """A rough prompt token count: the words in every message's text (and a string system prompt)."""
    words = sum(len(_text_of(item.get("content")).split()) for item in _items(api, payload))
    system = payload.get("system") if api == MESSAGES else payload.get("instructions")
    return words + len(_text_of(system).split())


def thinking_request(api: str, payload: dict[str, Any]) -> Any:
    """What the request asked for in the way of reasoning (``None``: nothing)."""
    if api == MESSAGES:
        thinking = payload.get("thinking")
        return thinking if isinstance(thinking, dict) and thinking.get("type") != "disabled" else None
    if api == CHAT:
        return payload.get("reasoning_effort") or payload.get("thinking")
    return payload.get("reasoning")


def thinking_refusal(api: str, payload: dict[str, Any]) -> str | None:
    """Anthropic's rule for a request with thinking enabled: the final assistant message, when it
    calls a tool, must start with a thinking block (the one its model signed). The message
    Anthropic refuses such a request with, or ``None`` when the request keeps the rule."""
    if api != MESSAGES or thinking_request(api, payload) is None:
        return None
    messages = _items(api, payload)
    said = [index for index, item in enumerate(messages) if item.get("role") == "assistant"]
    if not said:
        return None
    blocks = [b for b in _list(messages[said[-1]].get("content")) if isinstance(b, dict)]
    if not any(b.get("type") == "tool_use" for b in blocks) or blocks[0].get("type") in THINKING_BLOCKS:
        return None
    return (f"messages.{said[-1]}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must start "
            "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We "
            "recommend you include thinking blocks from previous turns. To avoid this requirement, disable "
            "`thinking`. Please consult our documentation at "
            "https://docs.claude.com/en/docs/build-with-claude/extended-thinking")


# ---- writing answers --------------------------------------------------------------------------

def _pieces(text: str) -> list[str]:
    """A text streamed word by word (spaces kept with the word before)."""
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]] if text else []


def chat_body(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.thinking:
        message["reasoning_content"] = THINKING_TEXT
    if answer.tool_call:
        message["tool_calls"] = [{"id": answer.call_id, "type": "function", "function": {
            "name": answer.tool_call.name, "arguments": answer.arguments_json}}]
    return {"id": f"chatcmpl-fake-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": answer.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if answer.tool_call else "stop"}],
            "usage": chat_usage(answer, answer.output_tokens)}


def chat_usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    """OpenAI's usage: prompt_tokens includes the cached ones (and, as LiteLLM reports Anthropic's, the
    cache writes, named cache_creation_input_tokens)."""
    prompt = answer.prompt_tokens + answer.cache_read + answer.cache_write
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": output_tokens,
                             "total_tokens": prompt + output_tokens}
    if answer.cache_read or answer.cache_write:
        usage["prompt_tokens_details"] = {"cached_tokens": answer.cache_read}
    if answer.cache_write:
        usage["cache_creation_input_tokens"] = answer.cache_write
    return usage


def messages_usage(answer: Answer, output_tokens: int) -> dict[str, int]:
    """Anthropic's usage: input_tokens leaves out the cache reads and writes, reported beside it."""
    usage = {"input_tokens": answer.prompt_tokens, "output_tokens": output_tokens}
    if answer.cache_read or answer.cache_write:
        usage |= {"cache_read_input_tokens": answer.cache_read, "cache_creation_input_tokens": answer.cache_write}
    return usage


def chat_events(answer: Answer, include_usage: bool) -> list[dict[str, Any]]:
    """Chat completion chunks: reasoning, text, then the tool call with its arguments in fragments."""
    base = {"id": f"chatcmpl-fake-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": answer.model}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish_reason}]}

    events = [chunk({"role": "assistant", "content": ""})]
    if answer.thinking:
        events += [chunk({"reasoning_content": piece}) for piece in _pieces(THINKING_TEXT)]
    events += [chunk({"content": piece}) for piece in _pieces(answer.text)]
    if answer.tool_call:
        events.append(chunk({"tool_calls": [{"index": 0, "id": answer.call_id, "type": "function",
                                             "function": {"name": answer.tool_call.name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                   for piece in answer.fragments()]
    events.append(chunk({}, "tool_calls" if answer.tool_call else "stop"))
    if include_usage:
        events.append({**base, "choices": [], "usage": chat_usage(answer, answer.output_tokens)})
    return events


def _signature() -> str:
    return "fakesig" + uuid.uuid4().hex


def messages_body(answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.thinking:
        content.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": _signature()})
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    if answer.tool_call:
        content.append({"type": "tool_use", "id": answer.call_id, "name": answer.tool_call.name,
                        "input": answer.tool_call.arguments})
    return {"id": f"msg_fake{uuid.uuid4().hex[:20]}", "type": "message", "role": "assistant",
            "model": answer.model, "content": content,
            "stop_reason": "tool_use" if answer.tool_call else "end_turn", "stop_sequence": None,
            "usage": messages_usage(answer, answer.output_tokens)}


def messages_events(answer: Answer) -> list[tuple[str, dict[str, Any]]]:
    """Anthropic stream events: thinking, text, then the tool_use block as input_json_delta pieces."""
    body = messages_body(answer)
    start = {**body, "content": [], "stop_reason": None,
             "usage": messages_usage(answer, 1)}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(body["content"]):
        kind = block["type"]
        if kind == "thinking":
            opening = {"type": "thinking", "thinking": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in answer.fragments()]
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": opening}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                   for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": answer.output_tokens}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _responses_output(answer: Answer) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if answer.thinking:
        items.append({"type": "reasoning", "id": f"rs_fake{uuid.uuid4().hex[:16]}",
                      "summary": [{"type": "summary_text", "text": THINKING_TEXT}],
                      "encrypted_content": ENCRYPTED_PREFIX + uuid.uuid4().hex})
    if answer.text:
        items.append({"type": "message", "id": f"msg_fake{uuid.uuid4().hex[:16]}", "role": "assistant",
                      "status": "completed",
                      "content": [{"type": "output_text", "text": answer.text, "annotations": []}]})
    if answer.tool_call:
        items.append({"type": "function_call", "id": f"fc_fake{uuid.uuid4().hex[:16]}", "status": "completed",
                      "call_id": answer.call_id, "name": answer.tool_call.name,
                      "arguments": answer.arguments_json})
    return items


def responses_body(answer: Answer, status: str = "completed",
                   output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": f"resp_fake{uuid.uuid4().hex[:20]}", "object": "response", "created_at": int(time.time()),
            "status": status, "model": answer.model, "error": None, "incomplete_details": None,
            "output": _responses_output(answer) if output is None else output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": answer.prompt_tokens + answer.cache_read,
                      "output_tokens": answer.output_tokens,
                      "total_tokens": answer.prompt_tokens + answer.cache_read + answer.output_tokens,
                      "input_tokens_details": {"cached_tokens": answer.cache_read},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def responses_events(answer: Answer) -> list[tuple[str, dict[str, Any]]]:
    """Responses stream events: output items added, their text or arguments in pieces, then done."""
    final = responses_body(answer)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**final, "status": "in_progress", "output": []}},
        {"type": "response.in_progress", "response": {**final, "status": "in_progress", "output": []}}]
    for index, item in enumerate(final["output"]):
        if item["type"] == "reasoning":
            text = item["summary"][0]["text"]
            part = {"type": "summary_text", "text": ""}
            where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "summary": []}})
            events.append({"type": "response.reasoning_summary_part.added", **where, "part": part})
            events += [{"type": "response.reasoning_summary_text.delta", **where, "delta": p} for p in _pieces(text)]
            events.append({"type": "response.reasoning_summary_text.done", **where, "text": text})
            events.append({"type": "response.reasoning_summary_part.done", **where, "part": {**part, "text": text}})
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "content": []}})
            events.append({"type": "response.content_part.added", **where, "part": part})
            events += [{"type": "response.output_text.delta", **where, "delta": p} for p in _pieces(text)]
            events.append({"type": "response.output_text.done", **where, "text": text})
            events.append({"type": "response.content_part.done", **where, "part": {**part, "text": text}})
        else:
            where = {"item_id": item["id"], "output_index": index}
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "arguments": ""}})
            events += [{"type": "response.function_call_arguments.delta", **where, "delta": p}
                       for p in answer.fragments()]
            events.append({"type": "response.function_call_arguments.done", **where,
                           "arguments": item["arguments"]})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": final})
    return [(event["type"], {**event, "sequence_number": number}) for number, event in enumerate(events)]
