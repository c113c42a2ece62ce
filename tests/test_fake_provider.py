"""The fake OpenAI-compatible provider used by end-to-end tests, checked with httpx."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from fake_conversation import Reply, ToolCall
from fake_provider import FakeProvider

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello world"}]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def chat(fake: FakeProvider, key: str = "key-one", model: str = "model-a", *,
         timeout: float = 5.0, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    """One chat completion request to the fake."""
    return httpx.post(f"{fake.base_url}/chat/completions", timeout=timeout,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})},
                      json={"model": model, "messages": MESSAGES, **body})


def sse_events(lines: Iterator[str]) -> list[Any]:
    """The payloads of `data:` lines, JSON-decoded except the final `[DONE]`."""
    events: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_non_stream_answer_and_usage(fake):
    response = chat(fake)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "model-a"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "fake:model-a:key-one"}
    assert choice["finish_reason"] == "stop"
    # prompt: "be brief" + "say hello world" = 5 words; answer: "fake:", "model-a:", "key-one"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_path_without_v1_health_and_models(fake):
    root = fake.base_url.removesuffix("/v1")
    response = httpx.post(f"{root}/chat/completions", headers={"Authorization": "Bearer k2"},
                          json={"model": "model-b", "messages": MESSAGES})
    assert response.json()["choices"][0]["message"]["content"] == "fake:model-b:k2"
    assert httpx.get(f"{root}/health").json() == {"status": "ok"}
    models = [m["id"] for m in httpx.get(f"{fake.base_url}/models").json()["data"]]
    assert models == ["fake-model", "model-b"]
    assert httpx.get(f"{root}/nowhere").status_code == 404


def test_stream_events_and_usage(fake):
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", headers={"Authorization": "Bearer key-one"},
                      json={"model": "model-a", "messages": MESSAGES, "stream": True,
                            "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "fake:model-a:key-one"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_stream_without_usage_option_has_no_usage_chunk(fake):
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", headers={"Authorization": "Bearer k"},
                      json={"model": "m", "messages": MESSAGES, "stream": True}) as response:
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    assert all("usage" not in event and event["choices"] for event in events[:-1])


def test_stream_chunks_arrive_incrementally(fake):
    fake.chunk_delay_s = 0.2
    arrivals: list[float] = []
    start = time.monotonic()
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", headers={"Authorization": "Bearer key-one"},
                      json={"model": "model-a", "messages": MESSAGES, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - start)
    # role, 3 content pieces, finish: 4 pauses of 0.2 s between the first event and the last
    assert len(arrivals) == 6
    assert arrivals[0] < 0.3
    assert arrivals[-1] - arrivals[0] >= 0.7


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("429", 429, "rate_limit_exceeded"), ("401", 401, "invalid_api_key"), ("500", 500, "server_error")])
def test_http_error_modes(fake, mode, status, code):
    fake.fail(mode)
    response = chat(fake)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert ("retry-after" in response.headers) == (mode == "429")
    if mode == "429":
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "rate_limit_error"
    assert fake.requests[-1]["outcome"] == mode


def test_error_mode_applies_to_streams_too(fake):
    fake.fail("429")
    assert chat(fake, stream=True).status_code == 429


def test_hang_times_out_the_client(fake):
    fake.fail("hang")
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        chat(fake, timeout=0.3)
    assert time.monotonic() - start < 2
    assert fake.requests[-1]["outcome"] == "hang"


def test_drop_closes_without_a_response(fake):
    fake.fail("drop")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        chat(fake)
    assert fake.requests[-1]["outcome"] == "drop"


@pytest.mark.parametrize("status", [401, 400])
def test_echo_modes_quote_the_key_and_auth_headers(fake, status):
    fake.fail(f"{status}-echo")
    response = chat(fake, headers={"x-api-key": "sk-other"})
    assert response.status_code == status and response.headers["x-echoed-key"] == "key-one"
    message = response.json()["error"]["message"]
    assert "key-one" in message and "Bearer key-one" in message and "sk-other" in message


def test_cut_sends_headers_then_half_a_body(fake):
    fake.fail("cut")
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES},
                      timeout=5) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_stall_sends_headers_then_nothing(fake):
    fake.fail("stall")
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES},
                      timeout=0.3) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            response.read()


def test_garbage_is_a_200_whose_body_is_not_json(fake):
    fake.fail("garbage")
    response = chat(fake)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_cut_stream_sends_some_events_then_closes(fake):
    fake.fail("cut-stream")
    seen: list[str] = []
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", timeout=5,
                      json={"model": "m", "messages": MESSAGES, "stream": True}) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            seen.extend(response.iter_lines())
    assert len(sse_events(iter(seen))) == 2 and "[DONE]" not in seen


def test_times_limits_a_rule(fake):
    fake.fail("500", times=1)
    assert [chat(fake).status_code for _ in range(3)] == [500, 200, 200]
    assert [r["outcome"] for r in fake.requests] == ["500", "ok", "ok"]


def test_rules_match_key_and_model(fake):
    fake.fail("401", key="key-bad")
    fake.fail("429", model="model-busy")
    assert chat(fake, key="key-bad").status_code == 401
    assert chat(fake, key="key-good").status_code == 200
    assert chat(fake, key="key-good", model="model-busy").status_code == 429
    assert chat(fake, key="key-bad", model="model-busy").status_code == 429  # newest rule first
    fake.clear()
    assert chat(fake, key="key-bad", model="model-busy").status_code == 200


def test_newest_rule_wins_and_expired_rules_fall_through(fake):
    fake.fail("500")
    fake.fail("429", times=1)
    assert [chat(fake).status_code for _ in range(2)] == [429, 500]


def test_fail_rejects_unknown_modes(fake):
    with pytest.raises(ValueError):
        fake.fail("404")
    with pytest.raises(ValueError):
        fake.fail("429", times=0)


def test_requests_are_recorded(fake):
    chat(fake, key="k1", headers={"x-request-id": "req-42"})
    chat(fake, key="k2", model="model-b", stream=True)
    first, second = fake.requests
    assert first == {"path": "/v1/chat/completions", "model": "model-a", "key": "k1", "stream": False,
                     "request_id": "req-42", "messages_text": "say hello world", "outcome": "ok",
                     "api": "chat", "tools": [], "tool_results": [], "thinking": None,
                     "body": {"model": "model-a", "messages": MESSAGES}}
    assert second["key"] == "k2" and second["model"] == "model-b" and second["stream"] is True
    assert second["request_id"] is None
    fake.reset_requests()
    assert fake.requests == []


def test_request_without_key(fake):
    response = httpx.post(f"{fake.base_url}/chat/completions", json={"model": "model-a", "messages": MESSAGES})
    assert response.json()["choices"][0]["message"]["content"] == "fake:model-a:"
    assert fake.requests[-1]["key"] is None


def test_bad_json_is_a_400(fake):
    response = httpx.post(f"{fake.base_url}/chat/completions", content=b"not json")
    assert response.status_code == 400


def test_stop_is_prompt_while_a_request_hangs():
    fake = FakeProvider().start()
    fake.fail("hang")
    errors: list[BaseException] = []

    def hanging_request() -> None:
        try:
            chat(fake, timeout=30)
        except httpx.HTTPError as error:
            errors.append(error)

    client = threading.Thread(target=hanging_request, daemon=True)
    client.start()
    deadline = time.monotonic() + 5
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.requests, "the hanging request never arrived"
    start = time.monotonic()
    fake.stop()
    assert time.monotonic() - start < 2
    client.join(timeout=5)
    assert not client.is_alive() and errors  # the client sees the connection end, not an answer
    fake.stop()  # idempotent


def test_stop_is_prompt_mid_stream():
    fake = FakeProvider(chunk_delay_s=5).start()
    opened = threading.Event()

    def slow_stream() -> None:
        try:
            with httpx.stream("POST", f"{fake.base_url}/chat/completions", timeout=30,
                              json={"model": "m", "messages": MESSAGES, "stream": True}) as response:
                for _ in response.iter_lines():
                    opened.set()
        except httpx.HTTPError:
            pass

    client = threading.Thread(target=slow_stream, daemon=True)
    client.start()
    assert opened.wait(5)
    start = time.monotonic()
    fake.stop()
    assert time.monotonic() - start < 2
    client.join(timeout=5)
    assert not client.is_alive()


def test_fifty_concurrent_requests(fake):
    fake.chunk_delay_s = 0.05
    with httpx.Client(timeout=10) as client:
        def one(i: int) -> str:
            response = client.post(f"{fake.base_url}/chat/completions", headers={"Authorization": f"Bearer k{i}"},
                                   json={"model": "model-a", "messages": MESSAGES, "stream": i % 2 == 0})
            response.raise_for_status()
            if i % 2:
                return response.json()["choices"][0]["message"]["content"]
            events = sse_events(iter(response.text.splitlines()))
            return "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(one, range(50)))
    assert answers == [f"fake:model-a:k{i}" for i in range(50)]
    assert len(fake.requests) == 50
    assert time.monotonic() - start < 5  # served concurrently, not one after another


def test_port_and_base_url():
    fake = FakeProvider()
    with pytest.raises(RuntimeError):
        _ = fake.port
    with fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        assert fake.port > 0


# ---- scripted conversations ---------------------------------------------------------------------

WRITE = ToolCall("Write", {"file_path": "/tmp/out.txt", "content": "a marker long enough to be cut in pieces"})
CHAT_TOOLS = [{"type": "function", "function": {"name": "Write", "parameters": {"type": "object"}}}]
ANTHROPIC_TOOLS = [{"name": "Write", "input_schema": {"type": "object"}}]
RESPONSES_TOOLS = [{"type": "function", "name": "Write", "parameters": {"type": "object"}}]


def post(fake: FakeProvider, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.root_url}{path}", json=body, timeout=5, headers={"x-api-key": "ant-key"})


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every SSE event of an Anthropic or Responses stream."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_chat_tool_call_streams_its_arguments_in_fragments_then_the_result_gets_the_reply(fake):
    fake.script(WRITE, Reply("all done"))
    first = chat(fake, stream=True, tools=CHAT_TOOLS)
    events = sse_events(first.iter_lines())
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    fragments = [d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d]
    assert len(fragments) > 3 and json.loads("".join(fragments)) == WRITE.arguments
    opening = next(d["tool_calls"][0] for d in deltas if "tool_calls" in d)
    assert opening["function"]["name"] == "Write" and opening["id"].startswith("call_")
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls" and events[-1] == "[DONE]"
    history = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [
        {"id": opening["id"], "type": "function", "function": {"name": "Write", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": opening["id"], "content": "File created"}]
    second = httpx.post(f"{fake.base_url}/chat/completions", timeout=5,
                        json={"model": "model-a", "messages": history, "tools": CHAT_TOOLS})
    assert second.json()["choices"][0]["message"]["content"] == "all done"
    asked, answered = fake.requests
    assert asked["tools"] == ["Write"] and asked["tool_results"] == [] and asked["outcome"] == "script"
    assert answered["tool_results"] == ["File created"]


def test_a_tool_call_step_needs_the_tool_offered(fake):
    fake.script(WRITE, Reply("all done"))
    assert chat(fake).json()["choices"][0]["message"]["content"] == "fake:model-a:key-one"  # no tools
    assert fake.requests[-1]["outcome"] == "ok"


def test_scripts_per_model_and_a_new_prompt_starts_the_script_again(fake):
    fake.script(Reply("from a"), model="model-a")
    fake.script(Reply("from anyone"))
    assert chat(fake).json()["choices"][0]["message"]["content"] == "from a"
    assert chat(fake, model="model-b").json()["choices"][0]["message"]["content"] == "from anyone"
    fake.clear_scripts()
    assert chat(fake).json()["choices"][0]["message"]["content"] == "fake:model-a:key-one"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use_with_thinking_streams_input_json_deltas(fake, stream):
    fake.script(WRITE, Reply("all done"))
    body = {"model": "claude-x", "max_tokens": 64, "stream": stream, "tools": ANTHROPIC_TOOLS,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "write it"}]}
    answer = post(fake, "/v1/messages", body)
    assert answer.status_code == 200
    if stream:
        events = named_events(answer.text)
        assert [name for name, _ in events][:2] == ["message_start", "content_block_start"]
        assert all(name == data["type"] for name, data in events)
        blocks = [data["content_block"] for name, data in events if name == "content_block_start"]
        assert [b["type"] for b in blocks] == ["thinking", "tool_use"] and blocks[1]["input"] == {}
        deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
        pieces = [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"]
        assert len(pieces) > 3 and json.loads("".join(pieces)) == WRITE.arguments
        assert any(d["type"] == "signature_delta" for d in deltas)
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use" and events[-1][0] == "message_stop"
        call_id = blocks[1]["id"]
    else:
        content = answer.json()["content"]
        assert [b["type"] for b in content] == ["thinking", "tool_use"] and content[1]["input"] == WRITE.arguments
        assert answer.json()["stop_reason"] == "tool_use"
        call_id = content[1]["id"]
    assert fake.requests[-1]["key"] == "ant-key" and fake.requests[-1]["thinking"]["type"] == "enabled"
    body["messages"] += [{"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "Write",
                                                            "input": WRITE.arguments}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                                       "content": [{"type": "text", "text": "written"}]}]}]
    body["stream"] = False
    content = post(fake, "/v1/messages", body).json()["content"]
    assert content[-1] == {"type": "text", "text": "all done"}
    assert fake.requests[-1]["tool_results"] == ["written"]


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_call_items(fake, stream):
    fake.script(WRITE, Reply("all done"))
    body = {"model": "gpt-x", "stream": stream, "tools": RESPONSES_TOOLS, "input": "write it"}
    answer = post(fake, "/v1/responses", body)
    if stream:
        events = named_events(answer.text)
        assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
        pieces = [e["delta"] for name, e in events if name == "response.function_call_arguments.delta"]
        assert len(pieces) > 3 and json.loads("".join(pieces)) == WRITE.arguments
        assert events[-1][0] == "response.completed"
        output = events[-1][1]["response"]["output"]
    else:
        output = answer.json()["output"]
    assert [item["type"] for item in output] == ["function_call"] and output[0]["name"] == "Write"
    assert json.loads(output[0]["arguments"]) == WRITE.arguments
    body.update(stream=False, input=[{"type": "message", "role": "user", "content": "write it"}, output[0],
                                     {"type": "function_call_output", "call_id": output[0]["call_id"],
                                      "output": "written"}])
    answered = post(fake, "/v1/responses", body).json()["output"]
    assert answered[0]["content"][0]["text"] == "all done"
    assert fake.requests[-1]["tool_results"] == ["written"] and fake.requests[-1]["api"] == "responses"


def test_count_tokens_counts_the_prompts_words(fake):
    answer = post(fake, "/v1/messages/count_tokens", {"model": "claude-x", "system": "be brief",
                                                      "messages": [{"role": "user", "content": "one two three"}]})
    assert answer.json() == {"input_tokens": 5}
    assert fake.requests[-1]["api"] == "count_tokens"


def test_strict_thinking_refuses_a_tool_call_sent_back_without_its_thinking(fake):
    """Anthropic's rule, kept when asked: with thinking on, the final assistant message that calls a
    tool must start with its thinking block."""
    fake.strict_thinking = True
    fake.script(WRITE, Reply("all done"))
    body = {"model": "claude-x", "max_tokens": 64, "tools": ANTHROPIC_TOOLS,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "write it"}]}
    said = post(fake, "/v1/messages", body).json()["content"]
    assert [b["type"] for b in said] == ["thinking", "tool_use"]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": said[1]["id"], "content": "ok"}]}
    bare = {**body, "messages": [*body["messages"], {"role": "assistant", "content": said[1:]}, result]}
    refused = post(fake, "/v1/messages", bare)
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
    assert "Expected `thinking` or `redacted_thinking`, but found `tool_use`" in refused.json()["error"]["message"]
    assert fake.requests[-1]["outcome"] == "400"
    unthinking = {k: v for k, v in bare.items() if k != "thinking"}  # the rule binds only with thinking on
    assert post(fake, "/v1/messages", unthinking).json()["content"] == [{"type": "text", "text": "all done"}]
    kept = {**body, "messages": [*body["messages"], {"role": "assistant", "content": said}, result]}
    assert post(fake, "/v1/messages", kept).json()["content"][-1] == {"type": "text", "text": "all done"}
