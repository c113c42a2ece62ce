"""Google generateContent ⇄ chat completions (broke/gateway/translate/gemini_chat), worked examples:
the request, whole answers, both stream forms, function calls both ways, errors, token estimates."""
from __future__ import annotations

import json
from typing import Any

import pytest

from broke.errors import InvalidInputError
from broke.gateway.translate import Translation
from broke.gateway.translate.gemini_chat import STREAM_FORM, count_estimate, to_chat

READ_FILE = {"name": "read_file", "description": "read a file",
             "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}, "required": ["path"]}}
REQUEST: dict[str, Any] = {
    "model": "gemini-2.5-pro",
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "contents": [
        {"role": "user", "parts": [{"text": "what is in a.txt?"},
                                   {"inlineData": {"mimeType": "image/png", "data": "iVBO"}}]},
        {"role": "model", "parts": [{"text": "thinking", "thought": True},
                                    {"functionCall": {"name": "read_file", "args": {"path": "a.txt"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "read_file", "response": {"output": "hello"}}}]},
    ],
    "tools": [{"functionDeclarations": [READ_FILE]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read_file"]}},
    "generationConfig": {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"]},
}


def chat_sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def delta(content: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "choices": [{"index": 0, "delta": content, "finish_reason": finish}]}


TOOL_STREAM = chat_sse(
    delta({"content": "Reading"}),
    delta({"content": " it."}),
    delta({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                           "function": {"name": "read_file", "arguments": '{"pa'}}]}),
    delta({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "b.txt"}'}}]}),
    delta({}, "tool_calls"),
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}},
)


def test_a_request_becomes_a_chat_completion_with_tools_images_and_matched_call_ids() -> None:
    body = to_chat(REQUEST, limit_field="max_completion_tokens")
    system, user, model, tool = body["messages"]
    assert system == {"role": "system", "content": "be brief"}
    assert user["content"] == [{"type": "text", "text": "what is in a.txt?"},
                               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]
    assert model["reasoning_content"] == "thinking" and model["content"] is None
    (call,) = model["tool_calls"]
    assert call["function"] == {"name": "read_file", "arguments": '{"path":"a.txt"}'}
    assert tool == {"role": "tool", "tool_call_id": call["id"], "content": '{"output":"hello"}'}
    (function,) = body["tools"]
    assert function["function"]["parameters"] == {"type": "object", "properties": {"path": {"type": "string"}},
                                                  "required": ["path"]}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "read_file"}}
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"], body["stop"]) == (0.2, 0.9, 100, ["END"])
    assert "stream" not in body


def test_json_output_and_streaming_are_asked_for_in_chat_terms() -> None:
    body = to_chat({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "stream": True,
                    "generationConfig": {"responseMimeType": "application/json",
                                         "responseJsonSchema": {"type": "object"}}})
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response",
                                                                              "schema": {"type": "object"}}}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_a_part_a_chat_backend_cannot_take_is_refused_in_one_line() -> None:
    pdf = {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "application/pdf", "data": "x"}}]}]}
    with pytest.raises(InvalidInputError, match="application/pdf part cannot be sent to a chat backend"):
        to_chat(pdf)


def test_a_whole_answer_with_a_tool_call_comes_back_as_a_function_call() -> None:
    answer = {"id": "c1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Reading it.", "reasoning_content": "hm",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path": "b.txt"}'}}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2}}}
    got = json.loads(Translation("gemini", "chat", REQUEST).whole(json.dumps(answer).encode()))
    (candidate,) = got["candidates"]
    assert candidate["content"] == {"role": "model", "parts": [
        {"text": "hm", "thought": True}, {"text": "Reading it."},
        {"functionCall": {"id": "call_9", "name": "read_file", "args": {"path": "b.txt"}}}]}
    assert candidate["finishReason"] == "STOP" and got["modelVersion"] == "gemini-2.5-pro"
    assert got["usageMetadata"] == {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17,
                                    "cachedContentTokenCount": 2}


def _stream(form: str, data: bytes, cut: int = 7) -> bytes:
    translation = Translation("gemini", "chat", {**REQUEST, "stream": True, STREAM_FORM: form})
    out = b"".join(translation.feed(data[i:i + cut]) for i in range(0, len(data), cut))
    return out + translation.flush()


def test_the_sse_stream_gives_text_as_it_comes_and_the_call_whole_at_the_end() -> None:
    out = _stream("sse", TOOL_STREAM)
    chunks = [json.loads(line[6:]) for line in out.decode().split("\r\n\r\n") if line.startswith("data: ")]
    texts = [c["candidates"][0]["content"]["parts"] for c in chunks[:-1]]
    assert texts == [[{"text": "Reading"}], [{"text": " it."}]]
    last = chunks[-1]
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "call_9", "name": "read_file", "args": {"path": "b.txt"}}}]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}


def test_the_json_array_stream_is_one_json_array_of_the_same_chunks() -> None:
    sse = [json.loads(line[6:]) for line in _stream("sse", TOOL_STREAM).decode().split("\r\n\r\n")
           if line.startswith("data: ")]
    array = json.loads(_stream("json", TOOL_STREAM, cut=3))
    strip = [{k: v for k, v in c.items() if k != "responseId"} for c in sse]
    assert [{k: v for k, v in c.items() if k != "responseId"} for c in array] == strip
    (empty,) = json.loads(_stream("json", b""))  # a stream that said nothing still ends, in one chunk
    assert empty["candidates"] == [{"content": {"role": "model", "parts": [{"text": ""}]}, "index": 0,
                                    "finishReason": "STOP"}]


def test_a_gemini_client_reaches_an_anthropic_backend_through_chat() -> None:
    translation = Translation("gemini", "messages", REQUEST)
    assert translation.body["system"] == [{"type": "text", "text": "be brief"}] or "system" in translation.body
    assert translation.body["tools"][0]["name"] == "read_file"
    answer = {"id": "m1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
              "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "c"}}],
              "usage": {"input_tokens": 3, "output_tokens": 4}}
    got = json.loads(translation.whole(json.dumps(answer).encode()))
    assert got["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "toolu_1", "name": "read_file", "args": {"path": "c"}}}]
    assert got["usageMetadata"]["totalTokenCount"] == 7


@pytest.mark.parametrize(("status", "name"), [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"),
                                              (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL")])
def test_errors_are_google_shaped(status: int, name: str) -> None:
    body = Translation("gemini", "chat", REQUEST).error(status, b'{"error": {"message": "no"}}')
    assert json.loads(body) == {"error": {"code": status, "message": "no", "status": name}}


def test_count_estimate_reads_the_request_or_the_wrapped_request() -> None:
    plain = count_estimate({"contents": REQUEST["contents"]})
    wrapped = count_estimate({"generateContentRequest": {"contents": REQUEST["contents"]}})
    assert plain == wrapped and plain["totalTokens"] > 10
