"""broke's own translation, pair by pair, on worked examples: Anthropic Messages ⇄ chat completions
and Responses ⇄ chat completions, requests, whole answers, streams (cut anywhere), errors."""
from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from broke.gateway.translate import Translation, messages_chat, responses_chat
from broke.gateway.wire import without_unkept_thinking

PNG = "iVBORw0KGgo="


def sse(*chunks: dict[str, Any] | str) -> bytes:
    """A chat completion stream of these chunks ("[DONE]" as it is)."""
    return b"".join(b"data: " + (c.encode() if isinstance(c, str) else orjson.dumps(c)) + b"\n\n" for c in chunks)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "backend-name", "choices": choices,
            **extra}


#: Reasoning, text, then two parallel tool calls whose arguments come in pieces, then usage (cached included).
PARALLEL = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "look at "}), chunk({"reasoning_content": "both"}),
    chunk({"content": "Reading "}), chunk({"content": "two files."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                           "function": {"name": "Read", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_pa'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                           "function": {"name": "Read", "arguments": '{"file_'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a.py"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'path": "b.py"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage={"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                       "prompt_tokens_details": {"cached_tokens": 60},
                       "completion_tokens_details": {"reasoning_tokens": 5}}),
    "[DONE]")


def events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of an SSE byte stream."""
    out = []
    for block in data.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


def fed(translation: Any, data: bytes, size: int) -> bytes:
    """A stream fed to a translation in pieces of `size` bytes (cut anywhere, mid-line included)."""
    pieces = [translation.feed(data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(pieces) + translation.flush()


# ---- Anthropic Messages -> chat ---------------------------------------------------------------

def test_a_messages_request_becomes_a_chat_request() -> None:
    request = {
        "model": "sonnet", "max_tokens": 512, "stream": True, "temperature": 0.2, "top_k": 5,
        "metadata": {"user_id": "u"}, "output_config": {"effort": "high"}, "stop_sequences": ["END"],
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "tools": [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"},
                   "cache_control": {"type": "ephemeral"}},
                  {"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is here?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": PNG}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "two files", "signature": "sig-from-anthropic"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a.py"}},
                {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "b.png"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print(1)"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": [
                    {"type": "text", "text": "too big"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/b.png"}}]},
                {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "Now be verbose."},
            {"role": "user", "content": "and?"}]}
    body = messages_chat.to_chat(request)
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "what is here?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": "Let me look.", "reasoning_content": "two files", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"a.py"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"b.png"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "print(1)"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: too big"},
        {"role": "user", "content": [{"type": "text", "text": "go on"},
                                     {"type": "image_url", "image_url": {"url": "https://x/b.png"}}]},
        {"role": "system", "content": "Now be verbose."},  # a system message stays one, where it stands
        {"role": "user", "content": "and?"}]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "Read", "description": "read a file", "parameters": {"type": "object"}}}]  # server tool left out
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["max_tokens"] == 512 and body["stop"] == ["END"] and body["temperature"] == 0.2
    assert body["reasoning_effort"] == "medium" and body["stream_options"] == {"include_usage": True}
    assert set(body) == {"model", "messages", "stream", "temperature", "max_tokens", "stop", "tools", "tool_choice",
                         "parallel_tool_calls", "reasoning_effort", "stream_options"}  # metadata, top_k, … left out
    assert "cache_control" not in orjson.dumps(body).decode()
    assert "sig-from-anthropic" not in orjson.dumps(body).decode()  # a signature never goes to another backend
    assert messages_chat.to_chat(request, limit_field="max_completion_tokens")["max_completion_tokens"] == 512
    adaptive = {**request, "thinking": {"type": "adaptive"}}  # its effort is output_config's
    assert messages_chat.to_chat(adaptive)["reasoning_effort"] == "high"
    assert "reasoning_effort" not in messages_chat.to_chat({**request, "thinking": {"type": "disabled"}})


def test_a_whole_chat_answer_becomes_a_message_under_the_requested_model() -> None:
    answer = {"id": "chatcmpl-9", "model": "backend-name", "choices": [{"index": 0, "finish_reason": "tool_calls",
              "message": {"role": "assistant", "content": "On it.", "reasoning_content": "think",
                          "tool_calls": [{"id": "call_1", "type": "function",
                                          "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]}}],
              "usage": {"prompt_tokens": 50, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 30}}}
    message = orjson.loads(Translation("messages", "chat", {"model": "sonnet"}).whole(orjson.dumps(answer)))
    assert message["model"] == "sonnet" and message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [
        {"type": "thinking", "thinking": "think", "signature": messages_chat.SIGNATURE},
        {"type": "text", "text": "On it."},
        {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}}]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 20, "cache_read_input_tokens": 30,
                                "cache_creation_input_tokens": 0, "output_tokens": 7}
    for finish, stop in (("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")):
        plain = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
        assert messages_chat.from_chat(plain, "sonnet")["stop_reason"] == stop


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_a_chat_stream_becomes_messages_events_with_parallel_calls_in_their_own_blocks(size: int) -> None:
    said = events(fed(Translation("messages", "chat", {"model": "sonnet", "stream": True}), PARALLEL, size))
    names = [name for name, _ in said]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert said[0][1]["message"]["model"] == "sonnet"
    blocks: dict[int, dict[str, Any]] = {}
    for name, data in said:  # rebuilt as an Anthropic SDK does
        if name == "content_block_start":
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif name == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            kind = delta["type"]
            if kind == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif kind == "signature_delta":
                block["signature"] = delta["signature"]
            elif kind == "text_delta":
                block["text"] += delta["text"]
            else:
                block["json"] += delta["partial_json"]
    assert [b["type"] for b in blocks.values()] == ["thinking", "text", "tool_use", "tool_use"]
    assert blocks[0]["thinking"] == "look at both" and blocks[0]["signature"] == messages_chat.SIGNATURE
    assert blocks[1]["text"] == "Reading two files."
    assert [(b["id"], json.loads(b["json"])) for b in list(blocks.values())[2:]] == [
        ("call_a", {"file_path": "a.py"}), ("call_b", {"file_path": "b.py"})]
    assert names.count("content_block_start") == names.count("content_block_stop") == 4
    final = said[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {"input_tokens": 40, "cache_read_input_tokens": 60,
                              "cache_creation_input_tokens": 0, "output_tokens": 20}


def test_an_error_answers_in_anthropic_shape_and_count_tokens_is_estimated() -> None:
    translation = Translation("messages", "chat", {"model": "sonnet"})
    error = orjson.loads(translation.error(429, b'{"error": {"message": "slow down", "type": "rate_limit"}}'))
    assert error == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert orjson.loads(translation.error(503, b"upstream down"))["error"] == {"type": "api_error",
                                                                             "message": "upstream down"}
    small = messages_chat.count_estimate({"messages": [{"role": "user", "content": "hi"}]})["input_tokens"]
    large = messages_chat.count_estimate({"messages": [{"role": "user", "content": "hi " * 4000}]})["input_tokens"]
    assert 1 <= small < 20 and 2500 < large < 4500


def test_a_mid_stream_error_ends_the_stream_with_an_error_event() -> None:
    said = events(Translation("messages", "chat", {"model": "sonnet"}).feed(sse(
        chunk({"content": "par"}), {"error": {"message": "overloaded", "code": 529}})))
    assert said[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "overloaded"}})


def test_thinking_broke_made_is_never_sent_to_anthropic() -> None:
    ours = {"type": "thinking", "thinking": "from a chat backend", "signature": messages_chat.SIGNATURE}
    theirs = {"type": "thinking", "thinking": "from anthropic", "signature": "EqQBCkYIBxgCKkA"}
    call = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}
    request = {"model": "m", "thinking": {"type": "enabled", "budget_tokens": 2048}, "messages": [
        {"role": "user", "content": "go"}, {"role": "assistant", "content": [theirs, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "more"}, {"role": "assistant", "content": [ours, call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]}
    sent = without_unkept_thinking(request)
    assert sent["messages"][1]["content"][0] == theirs  # Anthropic's own signature kept
    assert sent["messages"][3]["content"] == [call] and "thinking" not in sent  # ours dropped, so no thinking turn


# ---- Responses -> chat ------------------------------------------------------------------------

CODEX_TOOLS = [
    {"type": "function", "name": "shell", "description": "run", "parameters": {"type": "object"}, "strict": False},
    {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar"}},
    {"type": "web_search"}]


def test_a_responses_request_becomes_a_chat_request() -> None:
    request = {
        "model": "gpt-5-codex", "instructions": "You are Codex.", "store": False, "include": ["x"],
        "prompt_cache_key": "k", "max_output_tokens": 300, "reasoning": {"effort": "high", "summary": "auto"},
        "tools": CODEX_TOOLS, "tool_choice": "auto", "parallel_tool_calls": True, "stream": True,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be careful"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "fix it"}, {"type": "input_image", "image_url": "data:image/png;x"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "two steps"}],
             "encrypted_content": "opaque"},
            {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"cmd":["ls"]}'},
            {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "function_call_output", "call_id": "c1", "output": "a.py"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Patched."}]},
            {"type": "message", "role": "system", "content": "Context changed."},
            {"type": "message", "role": "user", "content": "thanks"}]}
    body = responses_chat.to_chat(request)
    assert body["messages"] == [
        {"role": "system", "content": "You are Codex."},
        {"role": "system", "content": "be careful"},
        {"role": "user", "content": [{"type": "text", "text": "fix it"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;x"}}]},
        {"role": "assistant", "content": None, "reasoning_content": "two steps", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "shell", "arguments": '{"cmd":["ls"]}'}},
            {"id": "c2", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": '{"input":"*** Begin Patch"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.py"},
        {"role": "tool", "tool_call_id": "c2", "content": "Done!"},
        {"role": "assistant", "content": "Patched."},
        {"role": "system", "content": "Context changed."},
        {"role": "user", "content": "thanks"}]
    assert [t["function"]["name"] for t in body["tools"]] == ["shell", "apply_patch"]  # web_search left out
    assert body["tools"][1]["function"]["parameters"]["properties"] == {"input": {"type": "string"}}
    assert body["max_tokens"] == 300 and body["reasoning_effort"] == "high" and body["parallel_tool_calls"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert set(body) == {"model", "messages", "stream", "max_tokens", "parallel_tool_calls", "tools", "tool_choice",
                         "reasoning_effort", "stream_options"}  # store, include, prompt_cache_key, … left out
    assert "opaque" not in orjson.dumps(body).decode()  # encrypted reasoning stays with its provider


def test_a_whole_chat_answer_becomes_a_response_with_custom_calls_back_in_their_shape() -> None:
    answer = {"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Patching.", "reasoning_content": "why",
        "tool_calls": [{"id": "c1", "function": {"name": "shell", "arguments": '{"cmd":["ls"]}'}},
                       {"id": "c2", "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin"}'}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6}}}
    response = orjson.loads(Translation("responses", "chat", {"model": "gpt-5-codex", "tools": CODEX_TOOLS})
                            .whole(orjson.dumps(answer)))
    assert response["model"] == "gpt-5-codex" and response["status"] == "completed"
    output = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
    assert output == [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "why"}]},
        {"type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Patching.", "annotations": []}]},
        {"type": "function_call", "status": "completed", "call_id": "c1", "name": "shell",
         "arguments": '{"cmd":["ls"]}'},
        {"type": "custom_tool_call", "status": "completed", "call_id": "c2", "name": "apply_patch",
         "input": "*** Begin"}]
    assert response["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 6},
                                 "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
                                 "total_tokens": 14}
    cut = responses_chat.from_chat({"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}, "m")
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("size", [1, 9, 10_000])
def test_a_chat_stream_becomes_responses_events(size: int) -> None:
    said = events(fed(Translation("responses", "chat", {"model": "gpt-5-codex", "stream": True}), PARALLEL, size))
    kinds = [data["type"] for _, data in said]
    assert [data["sequence_number"] for _, data in said] == list(range(len(said)))
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert all(name == data["type"] for name, data in said)
    arguments: dict[str, str] = {}
    for _, data in said:
        if data["type"] == "response.function_call_arguments.delta":
            arguments[data["item_id"]] = arguments.get(data["item_id"], "") + data["delta"]
    done = said[-1][1]["response"]
    assert done["model"] == "gpt-5-codex" and done["status"] == "completed"
    assert [i["type"] for i in done["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert done["output"][0]["summary"][0]["text"] == "look at both"
    assert done["output"][1]["content"][0]["text"] == "Reading two files."
    calls = done["output"][2:]
    assert [(c["call_id"], json.loads(c["arguments"])) for c in calls] == [
        ("call_a", {"file_path": "a.py"}), ("call_b", {"file_path": "b.py"})]
    assert {c["id"]: c["arguments"] for c in calls} == arguments  # the pieces add up to the whole
    assert done["usage"]["input_tokens"] == 100 and done["usage"]["input_tokens_details"] == {"cached_tokens": 60}
    assert done["usage"]["output_tokens_details"] == {"reasoning_tokens": 5}
    added = [d["item"]["type"] for _, d in said if d["type"] == "response.output_item.added"]
    assert added == ["reasoning", "message", "function_call", "function_call"]
    assert kinds.count("response.output_item.done") == 4


def test_a_streamed_custom_tool_call_comes_back_as_one_custom_input() -> None:
    stream = sse(chunk({"tool_calls": [{"index": 0, "id": "c9", "function": {"name": "apply_patch",
                                                                             "arguments": '{"inp'}}]}),
                 chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ut": "*** Begin Patch"}'}}]}),
                 chunk({}, "tool_calls"), "[DONE]")
    said = events(Translation("responses", "chat", {"model": "m", "tools": CODEX_TOOLS, "stream": True}).feed(stream))
    (done,) = [d for _, d in said if d["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == "*** Begin Patch"
    assert said[-1][1]["response"]["output"][0]["type"] == "custom_tool_call"


def test_a_responses_error_keeps_openai_shape() -> None:
    error = orjson.loads(Translation("responses", "chat", {"model": "m"}).error(400, b'{"error": {"message": "bad"}}'))
    assert error["error"]["message"] == "bad" and error["error"]["type"] == "invalid_request_error"


# ---- chat (and Responses, through chat) -> Anthropic Messages ------------------------------------

def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


#: Anthropic's stream: thinking (signed), text, then two tool calls with their input in pieces.
ANTHROPIC_STREAM = anthropic_sse(
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                          "model": "claude-x", "usage": {"input_tokens": 12,
                                                                         "cache_read_input_tokens": 30}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "ping"},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Reading."}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a",
                                                                  "name": "shell", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"cmd"'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ': "ls"}'}},
    {"type": "content_block_stop", "index": 2},
    {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b",
                                                                  "name": "shell", "input": {}}},
    {"type": "content_block_delta", "index": 3,
     "delta": {"type": "input_json_delta", "partial_json": '{"cmd": "pwd"}'}},
    {"type": "content_block_stop", "index": 3},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"})


def test_a_chat_request_becomes_an_anthropic_request() -> None:
    request = {"model": "claude-x", "stream": True, "max_completion_tokens": 100, "reasoning_effort": "low",
               "temperature": 0.5, "n": 1, "seed": 3, "parallel_tool_calls": False, "stop": "END",
               "tools": [{"type": "function", "function": {"name": "shell", "description": "run",
                                                           "parameters": {"type": "object"}}}],
               "messages": [
                   {"role": "system", "content": "be terse"},
                   {"role": "user", "content": [{"type": "text", "text": "look"}, {
                       "type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
                   {"role": "assistant", "content": None, "reasoning_content": "unsigned", "tool_calls": [
                       {"id": "c1", "type": "function", "function": {"name": "shell", "arguments": '{"cmd":"ls"}'}},
                       {"id": "c2", "type": "function", "function": {"name": "shell", "arguments": '{"cmd":"pwd"}'}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "a.py"},
                   {"role": "tool", "tool_call_id": "c2", "content": "/w"},
                   {"role": "developer", "content": "mind the tests"},
                   {"role": "user", "content": "go on"}]}
    body = Translation("chat", "messages", request).body
    assert body["system"] == [{"type": "text", "text": "be terse"}, {"type": "text", "text": "mind the tests"}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "look"}, {
            "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
        {"role": "assistant", "content": [  # reasoning without a signature is not sent as thinking
            {"type": "tool_use", "id": "c1", "name": "shell", "input": {"cmd": "ls"}},
            {"type": "tool_use", "id": "c2", "name": "shell", "input": {"cmd": "pwd"}}]},
        {"role": "user", "content": [  # the results and the next words in one user turn
            {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "a.py"}]},
            {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "/w"}]},
            {"type": "text", "text": "go on"}]}]
    assert body["tools"] == [{"name": "shell", "description": "run", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024} and body["max_tokens"] == 2048
    assert body["stop_sequences"] == ["END"] and "temperature" not in body  # no temperature while thinking
    assert set(body) == {"model", "system", "messages", "max_tokens", "stream", "stop_sequences", "tools",
                         "tool_choice", "thinking"}  # n, seed, … left out


def test_an_anthropic_answer_becomes_a_chat_completion() -> None:
    answer = {"id": "msg_1", "type": "message", "model": "claude-x", "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": "Reading."},
        {"type": "tool_use", "id": "toolu_a", "name": "shell", "input": {"cmd": "ls"}}],
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 30, "output_tokens": 9}}
    chat = orjson.loads(Translation("chat", "messages", {"model": "sonnet"}).whole(orjson.dumps(answer)))
    assert chat["model"] == "sonnet" and chat["choices"][0]["finish_reason"] == "tool_calls"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "Reading.", "reasoning_content": "hmm",
                                             "tool_calls": [{"id": "toolu_a", "type": "function", "function": {
                                                 "name": "shell", "arguments": '{"cmd":"ls"}'}}]}
    assert chat["usage"] == {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51,
                             "prompt_tokens_details": {"cached_tokens": 30}}
    error = orjson.loads(Translation("chat", "messages", {"model": "m"}).error(
        429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}'))
    assert error["error"]["message"] == "slow" and error["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("size", [1, 13, 10_000])
def test_an_anthropic_stream_becomes_chat_chunks(size: int) -> None:
    translation = Translation("chat", "messages", {"model": "sonnet", "stream": True,
                                                   "stream_options": {"include_usage": True}})
    data = fed(translation, ANTHROPIC_STREAM, size).decode()
    assert data.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in data.splitlines() if line.startswith("data: {")]
    assert {c["model"] for c in chunks} == {"sonnet"}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "hmm"
    assert "".join(d.get("content") or "" for d in deltas) == "Reading."
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for call in delta.get("tool_calls") or []:
            got = calls.setdefault(call["index"], {"id": "", "arguments": ""})
            got["id"] = call.get("id") or got["id"]
            got["arguments"] += call["function"].get("arguments", "")
    assert [(c["id"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("toolu_a", {"cmd": "ls"}), ("toolu_b", {"cmd": "pwd"})]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 42 and chunks[-1]["usage"]["completion_tokens"] == 9


def test_a_responses_client_on_anthropic_goes_through_chat_both_ways() -> None:
    translation = Translation("responses", "messages", {"model": "gpt-5-codex", "instructions": "be Codex",
                                                        "input": "list files", "stream": True, "tools": CODEX_TOOLS})
    assert translation.body["system"] == [{"type": "text", "text": "be Codex"}]
    assert translation.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "list files"}]}]
    said = events(fed(translation, ANTHROPIC_STREAM, 17))
    done = said[-1][1]["response"]
    assert said[-1][0] == "response.completed" and done["model"] == "gpt-5-codex"
    assert [i["type"] for i in done["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert [json.loads(i["arguments"]) for i in done["output"][2:]] == [{"cmd": "ls"}, {"cmd": "pwd"}]
    assert done["usage"]["input_tokens"] == 42 and done["usage"]["input_tokens_details"] == {"cached_tokens": 30}
    error = orjson.loads(translation.error(400, b'{"type":"error","error":{"type":"invalid_request_error",'
                                                b'"message":"bad"}}'))
    assert error["error"]["message"] == "bad"
