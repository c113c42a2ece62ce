"""Claude Code's and Codex's APIs on chat completions backends, translated by the front proxy itself
(in process): the backend receives chat completions with the provider key, the client gets its own
API's answers, streams and errors under the model it asked for, and LiteLLM is never asked.

Setup lives in proxy_harness.py: `fake/model-a` and `fake/model-b` on the fake cloud, two keys
(`key-one`, `key-two`), sonnet on model-a; local workers are FakeProviders.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from broke import changes
from broke.catalog import load_catalog
from broke.routing.transport import litellm_needed
from broke.state.store import StateStore
from fake_conversation import ToolCall
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import FakeLiteLLM, Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(30)

StartProxy = Callable[..., "Proxy"]
Workers = Callable[[int], list[FakeProvider]]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"
LOCAL = "mlx/tiny"
MESSAGE = {"model": "sonnet", "max_tokens": 64, "system": "be brief",
           "metadata": {"user_id": "u"}, "messages": [{"role": "user", "content": "hi"}]}
RESPONSE = {"model": "sonnet", "input": "hi", "instructions": "be brief", "store": False}
BASH = {"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {
    "command": {"type": "string"}}}}


def events(answer: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]


def test_messages_reach_a_chat_backend_as_chat_completions_with_the_provider_key(
        cloud: FakeProvider, litellm: FakeLiteLLM, start_proxy: StartProxy) -> None:
    answer = start_proxy().post("/v1/messages", MESSAGE, headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-via"] == "translated" and answer.headers["x-broke-backend"] == MODEL_A
    body = answer.json()
    assert body["type"] == "message" and body["model"] == "sonnet" and body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": "fake:model-a:key-one"}]
    assert body["usage"]["output_tokens"] > 0
    (arrived,) = cloud.requests
    assert (arrived["path"], arrived["api"], arrived["model"]) == ("/v1/chat/completions", "chat", "model-a")
    assert arrived["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert "metadata" not in arrived["body"]
    assert litellm.requests == []


def test_responses_reach_a_chat_backend_as_chat_completions(
        cloud: FakeProvider, litellm: FakeLiteLLM, start_proxy: StartProxy) -> None:
    answer = start_proxy().post("/v1/responses", RESPONSE)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "response" and body["model"] == "sonnet" and body["status"] == "completed"
    assert body["output"][0]["content"][0]["text"] == "fake:model-a:key-one"
    (arrived,) = cloud.requests
    assert arrived["api"] == "chat" and "store" not in arrived["body"]
    assert litellm.requests == []


def test_a_streamed_tool_call_reaches_claude_code_as_tool_use_events(
        cloud: FakeProvider, start_proxy: StartProxy) -> None:
    cloud.script(ToolCall("Bash", {"command": "ls -la"}))
    body = {**MESSAGE, "stream": True, "tools": [BASH]}
    answer = start_proxy().post("/v1/messages", body)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    said = events(answer)
    assert said[0]["type"] == "message_start" and said[0]["message"]["model"] == "sonnet"
    assert said[-1]["type"] == "message_stop" and said[-2]["delta"]["stop_reason"] == "tool_use"
    (use,) = [e["content_block"] for e in said if e["type"] == "content_block_start"
              and e["content_block"]["type"] == "tool_use"]
    pieces = [e["delta"]["partial_json"] for e in said if e["type"] == "content_block_delta"
              and e["delta"]["type"] == "input_json_delta"]
    assert use["name"] == "Bash" and len(pieces) > 1 and json.loads("".join(pieces)) == {"command": "ls -la"}
    (arrived,) = cloud.requests
    assert arrived["stream"] and arrived["body"]["tools"][0]["function"]["name"] == "Bash"


def test_count_tokens_is_estimated_without_asking_the_backend(
        cloud: FakeProvider, litellm: FakeLiteLLM, start_proxy: StartProxy) -> None:
    answer = start_proxy().post("/v1/messages/count_tokens", {k: MESSAGE[k] for k in ("model", "messages")})
    assert answer.status_code == 200 and answer.json()["input_tokens"] > 0
    assert answer.headers["x-broke-via"] == "translated"
    assert cloud.requests == [] and litellm.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_backend_error_reaches_each_client_in_its_own_shape(
        cloud: FakeProvider, start_proxy: StartProxy, stream: bool) -> None:
    proxy = start_proxy()
    cloud.fail("400-echo")  # not retryable: relayed, translated, and scrubbed of the key
    answer = proxy.post("/v1/messages", {**MESSAGE, "stream": stream})
    assert answer.status_code == 400
    assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "invalid_request_error"
    assert "key-one" not in answer.text
    answer = proxy.post("/v1/responses", {**RESPONSE, "stream": stream})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"


def test_a_failing_key_fails_over_and_the_last_error_is_anthropic_shaped(
        cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    cloud.fail("429", key="key-one", times=1)
    answer = proxy.post("/v1/messages", MESSAGE)
    assert answer.status_code == 200 and answer.headers["x-broke-attempts"] == "2"
    assert answer.json()["content"][0]["text"] == "fake:model-a:key-two"
    cloud.fail("500")
    answer = proxy.post("/v1/messages", MESSAGE)
    assert answer.status_code == 500 and answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_a_local_model_gets_chat_completions_on_a_replica_broke_picks(
        store: StateStore, workers: Workers, litellm: FakeLiteLLM, start_proxy: StartProxy, path: str) -> None:
    changes.add_local_model(store, "tiny", "/models/tiny")
    changes.swap(store, [("sonnet", LOCAL)])
    dead, twin = workers(2)
    dead.fail("drop")
    proxy = start_proxy(workers={LOCAL: [dead, twin]})
    body = {**MESSAGE, "max_tokens": 100_000} if path == "/v1/messages" else {**RESPONSE, "max_output_tokens": 100_000}
    answer = proxy.post(path, body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == LOCAL and answer.headers["x-broke-attempts"] == "2"
    assert "fake:default_model:" in answer.text and '"model":"sonnet"' in answer.text.replace(" ", "")
    (arrived,) = twin.requests  # the dead replica passed over for its twin, as for chat
    assert arrived["path"] == "/v1/chat/completions" and arrived["model"] == "default_model"
    assert arrived["body"]["max_tokens"] == proxy.record.local_max_tokens  # capped for the worker
    assert litellm.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_chat_and_responses_clients_reach_an_anthropic_backend_as_messages(
        cloud: FakeProvider, store: StateStore, litellm: FakeLiteLLM, start_proxy: StartProxy, stream: bool) -> None:
    changes.add_backend(store, "fakeant/claude-x", provider="anthropic", model="claude-x", api_base=cloud.root_url,
                        key_env="FAKE_API_KEY", pinned=False)
    changes.swap(store, [("sonnet", "fakeant/claude-x")])
    proxy = start_proxy()
    chat = proxy.chat(stream=stream)
    assert chat.status_code == 200 and chat.headers["x-broke-via"] == "translated", chat.text
    response = proxy.post("/v1/responses", {**RESPONSE, "stream": stream})
    assert response.status_code == 200 and response.headers["x-broke-via"] == "translated", response.text
    if stream:
        said = [e for e in events(chat) if e.get("choices")]
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in said) == "fake:claude-x:key-one"
        assert chat.text.rstrip().endswith("data: [DONE]")
        (done,) = [e["response"] for e in events(response) if e["type"] == "response.completed"]
    else:
        assert chat.json()["choices"][0]["message"]["content"] == "fake:claude-x:key-one"
        done = response.json()
    assert done["output"][0]["content"][0]["text"] == "fake:claude-x:key-one"
    for answer in (chat, response):
        assert set(re.findall(r'"model"\s*:\s*"([^"]*)"', answer.text)) == {"sonnet"}
    arrived = cloud.requests
    assert [(r["api"], r["model"], r["key"]) for r in arrived] == [("messages", "claude-x", "key-one")] * 2
    assert arrived[1]["body"]["system"] == [{"type": "text", "text": "be brief"}]
    assert litellm.requests == []


def test_a_responses_request_continuing_a_stored_response_is_refused_in_one_line(
        cloud: FakeProvider, start_proxy: StartProxy) -> None:
    answer = start_proxy().post("/v1/responses", {**RESPONSE, "previous_response_id": "resp_123"})
    assert answer.status_code == 400 and answer.headers["x-broke-attempts"] == "1"
    assert "previous_response_id" in answer.json()["error"]["message"] and cloud.requests == []


def test_litellm_is_needed_only_for_providers_broke_does_not_speak(store: StateStore) -> None:
    catalog = load_catalog()
    workers = {LOCAL: ["http://127.0.0.1:9/v1"]}
    keys = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "GEMINI_API_KEY": "g"}
    changes.add_backend(store, "compat/m", provider="openai-compatible", model="m", api_base="http://h:1/v1",
                        key_env=None, pinned=False)
    changes.add_local_model(store, "tiny", "/models/tiny")
    every = (*catalog.slots,)
    for backend in ("compat/m", "anthropic/claude-sonnet-4-5-20250929", "openai/gpt-5", LOCAL):
        changes.swap(store, [(slot, backend) for slot in every])
        for slot in every:
            changes.set_fallbacks(store, slot, [])
        assert not litellm_needed(store.load(), catalog, workers, keys), backend
    changes.add_backend(store, "gemini/g", provider="gemini", model="g", api_base=None, key_env=None, pinned=False)
    changes.swap(store, [("sonnet", "gemini/g")])
    assert litellm_needed(store.load(), catalog, workers, keys)
    # without a Gemini key the backend cannot answer: nothing to start LiteLLM for
    assert not litellm_needed(store.load(), catalog, workers, {k: v for k, v in keys.items() if "GEMINI" not in k})


def test_the_shipped_slots_need_no_litellm_without_the_keys_of_the_providers_only_it_speaks(
        store: StateStore) -> None:
    catalog = load_catalog()
    state = store.load()
    keys = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o"}
    assert not litellm_needed(state, catalog, {}, keys)
    assert litellm_needed(state, catalog, {}, {**keys, "GEMINI_API_KEY": "g"})
