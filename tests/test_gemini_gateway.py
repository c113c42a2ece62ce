"""Google's generateContent API on the front proxy (in process): Gemini slots resolved like any
other, authenticated by x-goog-api-key or ?key=, translated to chat completions backends (and on to
Anthropic ones), refusals in Google's shape, LiteLLM asked only for a provider broke does not speak.

Setup lives in proxy_harness.py: `fake/model-a` and `fake/model-b` on the fake cloud, two keys.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from broke import changes
from broke.state.model import Access
from broke.state.store import StateStore
from fake_conversation import ToolCall
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import FakeLiteLLM, Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(30)

StartProxy = Callable[..., "Proxy"]
MODEL_A = "fake/model-a"
BODY: dict[str, Any] = {"systemInstruction": {"parts": [{"text": "be brief"}]},
                        "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
SHELL = {"functionDeclarations": [{"name": "run_shell_command", "description": "run",
                                   "parameters": {"type": "OBJECT", "properties": {"command": {"type": "STRING"}}}}]}


@pytest.fixture
def gemini_slots(store: StateStore, cloud: FakeProvider) -> None:
    """Both Gemini slots on the fake cloud's model-a."""
    changes.swap(store, [("gemini-pro", MODEL_A), ("gemini-flash", MODEL_A)])


def google(proxy: Proxy, target: str, body: dict[str, Any], *, key: str | None = None,
           by: str = "header") -> httpx.Response:
    """POST /v1beta/models/TARGET with the client token in x-goog-api-key (or ?key=)."""
    key = proxy.token if key is None else key
    if by == "header":
        return proxy.http.post(f"/v1beta/models/{target}", json=body, headers={"x-goog-api-key": key})
    separator = "&" if "?" in target else "?"
    return proxy.http.post(f"/v1beta/models/{target}{separator}key={key}", json=body)


@pytest.mark.usefixtures("gemini_slots")
@pytest.mark.parametrize("by", ["header", "query"])
def test_generate_content_reaches_a_chat_backend_by_its_gemini_name(
        cloud: FakeProvider, litellm: FakeLiteLLM, start_proxy: StartProxy, by: str) -> None:
    answer = google(start_proxy(), "gemini-2.5-pro:generateContent", BODY, by=by)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-slot"] == "gemini-pro" and answer.headers["x-broke-via"] == "translated"
    body = answer.json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "fake:model-a:key-one"}]
    assert body["candidates"][0]["finishReason"] == "STOP" and body["modelVersion"] == "gemini-2.5-pro"
    assert body["usageMetadata"]["candidatesTokenCount"] > 0
    (arrived,) = cloud.requests
    assert (arrived["api"], arrived["model"]) == ("chat", "model-a")
    assert arrived["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert litellm.requests == []


@pytest.mark.usefixtures("gemini_slots")
@pytest.mark.parametrize("alt", ["sse", ""])
def test_a_streamed_tool_call_reaches_the_gemini_client_as_a_function_call(
        cloud: FakeProvider, start_proxy: StartProxy, alt: str) -> None:
    cloud.script(ToolCall("run_shell_command", {"command": "ls"}))
    target = "gemini-2.5-flash:streamGenerateContent" + ("?alt=sse" if alt else "")
    answer = google(start_proxy(), target, {**BODY, "tools": [SHELL]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-slot"] == "gemini-flash"
    if alt:
        assert answer.headers["content-type"].startswith("text/event-stream")
        chunks = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
    else:
        assert answer.headers["content-type"].startswith("application/json")
        chunks = answer.json()
    last = chunks[-1]
    (part,) = last["candidates"][0]["content"]["parts"]
    assert part["functionCall"]["name"] == "run_shell_command" and part["functionCall"]["args"] == {"command": "ls"}
    assert last["usageMetadata"]["totalTokenCount"] > 0
    (arrived,) = cloud.requests
    assert arrived["body"]["stream"] is True and arrived["body"]["tools"][0]["function"]["name"] == "run_shell_command"


@pytest.mark.usefixtures("gemini_slots")
def test_count_tokens_is_estimated_for_a_chat_backend(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    answer = google(start_proxy(), "gemini-2.5-pro:countTokens", {"contents": BODY["contents"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["totalTokens"] > 0 and cloud.requests == []


@pytest.mark.usefixtures("gemini_slots")
def test_models_lists_the_slots_and_names_one(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    listed = proxy.http.get("/v1beta/models", headers={"x-goog-api-key": proxy.token})
    assert listed.status_code == 200
    names = [m["name"] for m in listed.json()["models"]]
    assert "models/gemini-pro" in names and "models/gemini-flash" in names and "models/sonnet" in names
    one = proxy.http.get(f"/v1beta/models/gemini-2.5-flash-lite?key={proxy.token}")
    assert one.status_code == 200 and one.json()["name"] == "models/gemini-flash"
    assert "generateContent" in one.json()["supportedGenerationMethods"]


@pytest.mark.usefixtures("gemini_slots")
@pytest.mark.parametrize("by", ["header", "query"])
def test_a_bad_or_missing_key_is_refused_in_googles_shape(
        cloud: FakeProvider, start_proxy: StartProxy, by: str) -> None:
    proxy = start_proxy()
    bad = google(proxy, "gemini-2.5-pro:generateContent", BODY, key="nope", by=by)
    assert bad.status_code == 401
    error = bad.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED" and "invalid token" in error["message"]
    missing = proxy.http.post("/v1beta/models/gemini-2.5-pro:generateContent", json=BODY)
    assert missing.status_code == 401 and "x-goog-api-key" in missing.json()["error"]["message"]
    assert proxy.http.get("/v1beta/models").json()["error"]["status"] == "UNAUTHENTICATED"
    assert cloud.requests == []


@pytest.mark.usefixtures("gemini_slots")
def test_a_slot_the_token_may_not_use_is_a_google_shaped_403(
        store: StateStore, cloud: FakeProvider, start_proxy: StartProxy) -> None:
    store.update(lambda state: setattr(state, "access", Access(slots=["sonnet"])))
    answer = google(start_proxy(), "gemini-2.5-pro:generateContent", BODY)
    assert answer.status_code == 403
    assert answer.json()["error"]["status"] == "PERMISSION_DENIED" and cloud.requests == []


@pytest.mark.usefixtures("gemini_slots")
def test_unknown_models_methods_and_backend_errors_are_google_shaped(
        cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    unknown = google(proxy, "llama-9:generateContent", BODY)
    assert unknown.status_code == 400 and unknown.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "unknown model 'llama-9'" in unknown.json()["error"]["message"]
    method = google(proxy, "gemini-2.5-pro:embedContent", BODY)
    assert method.status_code == 404 and method.json()["error"]["status"] == "NOT_FOUND"
    cloud.fail("400-echo")
    failed = google(proxy, "gemini-2.5-pro:generateContent", BODY)
    assert failed.status_code == 400 and failed.json()["error"]["code"] == 400
    assert "key-one" not in failed.text


def test_a_gemini_client_reaches_an_anthropic_backend_as_messages(
        cloud: FakeProvider, store: StateStore, litellm: FakeLiteLLM, start_proxy: StartProxy) -> None:
    changes.add_backend(store, "fakeant/claude-x", provider="anthropic", model="claude-x", api_base=cloud.root_url,
                        key_env="FAKE_API_KEY", pinned=False)
    changes.swap(store, [("gemini-pro", "fakeant/claude-x")])
    answer = google(start_proxy(), "gemini-2.5-pro:streamGenerateContent?alt=sse", BODY)
    assert answer.status_code == 200, answer.text
    text = "".join(p.get("text", "") for line in answer.text.splitlines() if line.startswith("data: ")
                   for p in json.loads(line[6:])["candidates"][0]["content"]["parts"])
    assert text == "fake:claude-x:key-one"
    (arrived,) = cloud.requests
    assert arrived["api"] == "messages" and litellm.requests == []


def test_a_gemini_backend_is_reached_through_litellm_as_chat_completions(
        cloud: FakeProvider, store: StateStore, gemini: str, litellm: FakeLiteLLM, start_proxy: StartProxy) -> None:
    changes.swap(store, [("gemini-pro", gemini)])
    answer = google(start_proxy(), "gemini-2.5-pro:generateContent", BODY)
    assert answer.headers["x-broke-via"] == "litellm"
    (arrived,) = litellm.requests
    assert arrived["path"] == "/v1/chat/completions" and arrived["body"]["messages"][-1]["content"] == "hi"
    assert arrived["authorization"] == "Bearer sk-broke-internal-test"
