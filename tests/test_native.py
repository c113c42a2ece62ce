"""Native forwarding and LiteLLM on demand: the front proxy answers at once, LiteLLM only when needed."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from broke.control.runfiles import read_record
from broke.procs import free_port
from conftest import add_fake_backends, run_cli
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)
CLAUDE_SLOTS = ("sonnet", "opus", "haiku", "subagent", "custom")
CODEX_SLOTS = ("gpt-5-codex", "gpt-5", "gpt-5-mini")
GEMINI_SLOTS = ("gemini-pro", "gemini-flash")


@pytest.fixture
def fake():
    provider = FakeProvider().start()
    yield provider
    provider.stop()


def test_a_request_that_needs_litellm_waits_while_it_starts(broke_home, fake, monkeypatch):
    """`broke start` returns once the front proxy answers; with everything sent through LiteLLM
    (BROKE_NATIVE=0) the first request waits for LiteLLM to start, and is answered."""
    monkeypatch.setenv("BROKE_NATIVE", "0")
    add_fake_backends(broke_home, fake, "model-a")
    run_cli("swap", "sonnet=fake/model-a")
    run_cli("start", "--port", str(free_port()))
    try:
        record = read_record(broke_home)
        token = json.loads(run_cli("connect", "--json").stdout)["token"]
        assert record.litellm.pid > 0  # starting, in the background
        answer = httpx.post(record.base_url + "/v1/messages", timeout=180,
                            headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
                            json={"model": "sonnet", "max_tokens": 16,
                                  "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200 and answer.headers["x-broke-via"] == "litellm", answer.text
        assert answer.json()["content"][0]["text"] == "fake:model-a:key-one"
        assert httpx.get(record.base_url + "/health", timeout=10).json()["litellm"] == "up"
    finally:
        run_cli("stop")


def test_claude_code_and_codex_on_chat_servers_never_start_litellm(broke_home, fake, monkeypatch):
    """Every slot on an OpenAI-compatible server: Messages and Responses are translated by broke, so
    `broke start` starts no LiteLLM, /v1/messages is served within 2 s of the start, and none starts later."""
    monkeypatch.setenv("BROKE_NATIVE", "1")
    add_fake_backends(broke_home, fake, "model-a")
    run_cli("swap", *[f"{s}=fake/model-a" for s in (*CLAUDE_SLOTS, *CODEX_SLOTS, *GEMINI_SLOTS, "auto")])
    for slot in (*CLAUDE_SLOTS, *CODEX_SLOTS, *GEMINI_SLOTS, "auto"):
        run_cli("fallback", slot, "--clear")
    started = time.monotonic()
    run_cli("start", "--port", str(free_port()))
    try:
        record = read_record(broke_home)
        token = json.loads(run_cli("connect", "--json").stdout)["token"]
        anthropic = {"x-api-key": token, "anthropic-version": "2023-06-01"}
        message = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(record.base_url + "/v1/messages", json=message, headers=anthropic, timeout=30)
        served_s = time.monotonic() - started
        assert answer.status_code == 200 and answer.headers["x-broke-via"] == "translated", answer.text
        assert served_s < 2.0, f"/v1/messages first served {served_s:.2f} s after `broke start` began"
        streamed = httpx.post(record.base_url + "/v1/messages", json={**message, "stream": True}, headers=anthropic,
                              timeout=30)
        assert streamed.status_code == 200 and "message_stop" in streamed.text
        counted = httpx.post(record.base_url + "/v1/messages/count_tokens", headers=anthropic, timeout=30,
                             json={k: message[k] for k in ("model", "messages")})
        assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
        for stream in (False, True):
            responses = httpx.post(record.base_url + "/v1/responses", timeout=30,
                                   headers={"authorization": f"Bearer {token}"},
                                   json={"model": "gpt-5-codex", "input": "hi", "stream": stream})
            assert responses.status_code == 200 and responses.headers["x-broke-via"] == "translated", responses.text
        gemini = httpx.post(record.base_url + "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                            headers={"x-goog-api-key": token}, timeout=30,
                            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        assert gemini.status_code == 200 and gemini.headers["x-broke-via"] == "translated", gemini.text
        said = [json.loads(line[6:]) for line in gemini.text.splitlines() if line.startswith("data: ")]
        assert "".join(p.get("text", "") for c in said for p in c["candidates"][0]["content"]["parts"]) \
            .startswith("fake:model-a:")
        assert {r["api"] for r in fake.requests} == {"chat"}
        assert read_record(broke_home).litellm.pid == 0  # no LiteLLM process, then or now
        assert httpx.get(record.base_url + "/health", timeout=10).json()["litellm"] == "not started"
    finally:
        run_cli("stop")


def test_native_backends_need_no_litellm_for_any_client_api(broke_home, fake, monkeypatch):
    """Claude's slots on Anthropic, Codex's on OpenAI, auto on an OpenAI-compatible server: every
    client's API is native, so LiteLLM is not started; the APIs that differ are translated by broke,
    so it never is."""
    monkeypatch.setenv("BROKE_NATIVE", "1")
    add_fake_backends(broke_home, fake, "model-a")
    run_cli("backend", "add", "fakeant/claude-x", "--provider", "anthropic", "--api-base", fake.root_url,
            "--model", "claude-x", "--key-env", "FAKE_API_KEY")
    run_cli("backend", "add", "fakeoai/gpt-x", "--provider", "openai", "--api-base", fake.base_url,
            "--model", "gpt-x", "--key-env", "FAKE_API_KEY")
    run_cli("swap", *[f"{s}=fakeant/claude-x" for s in CLAUDE_SLOTS], *[f"{s}=fakeoai/gpt-x" for s in CODEX_SLOTS],
            *[f"{s}=fake/model-a" for s in GEMINI_SLOTS], "auto=fake/model-a")
    for slot in (*CLAUDE_SLOTS, *CODEX_SLOTS, *GEMINI_SLOTS, "auto"):
        run_cli("fallback", slot, "--clear")
    run_cli("start", "--port", str(free_port()))
    try:
        record = read_record(broke_home)
        assert record.litellm.pid == 0
        status = json.loads(run_cli("status", "--json").stdout)
        assert status["running"] is True and status["missing"] == []
        url, token = record.base_url, json.loads(run_cli("connect", "--json").stdout)["token"]
        anthropic = {"x-api-key": token, "anthropic-version": "2023-06-01"}
        assert httpx.get(url + "/health", timeout=10).json()["litellm"] == "not started"

        message = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        for stream in (False, True):
            answer = httpx.post(url + "/v1/messages", json={**message, "stream": stream}, headers=anthropic, timeout=30)
            assert answer.status_code == 200 and answer.headers["x-broke-via"] == "native", answer.text
            arrived = fake.requests[-1]
            assert (arrived["api"], arrived["model"], arrived["key"]) == ("messages", "claude-x", "key-one")
        counted = httpx.post(url + "/v1/messages/count_tokens", json={k: message[k] for k in ("model", "messages")},
                             headers=anthropic, timeout=30)
        assert counted.status_code == 200 and counted.headers["x-broke-via"] == "native", counted.text
        assert isinstance(counted.json()["input_tokens"], int)
        responses = httpx.post(url + "/v1/responses", json={"model": "gpt-5-codex", "input": "hi"},
                               headers={"authorization": f"Bearer {token}"}, timeout=30)
        assert responses.status_code == 200 and responses.headers["x-broke-via"] == "native", responses.text
        assert fake.requests[-1]["api"] == "responses" and fake.requests[-1]["model"] == "gpt-x"
        assert read_record(broke_home).litellm.pid == 0  # nothing so far needed it

        # Chat completions and Responses to an Anthropic backend: translated by broke, still no LiteLLM.
        chat = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {token}"}, timeout=30,
                          json={"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200 and chat.headers["x-broke-via"] == "translated", chat.text
        responses = httpx.post(url + "/v1/responses", json={"model": "sonnet", "input": "hi"}, timeout=30,
                               headers={"authorization": f"Bearer {token}"})
        assert responses.status_code == 200 and responses.headers["x-broke-via"] == "translated", responses.text
        assert [r["api"] for r in fake.requests[-2:]] == ["messages", "messages"]
        assert read_record(broke_home).litellm.pid == 0
        assert json.loads(run_cli("status", "--json").stdout)["running"] is True
    finally:
        run_cli("stop")
    assert json.loads(run_cli("status", "--json").stdout)["running"] is False
