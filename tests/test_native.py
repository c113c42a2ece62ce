"""Native forwarding and LiteLLM on demand: the front proxy answers at once, LiteLLM only when needed."""
from __future__ import annotations

import json
import os

import httpx
import pytest

from broke.gateway.runfiles import read_record
from broke.procs import free_port
from conftest import run_cli
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def fake():
    provider = FakeProvider().start()
    yield provider
    provider.stop()


def add_fake_backend(home, fake, name="fake/model-a", provider="openai-compatible", key="key-one"):
    home.mkdir(parents=True, exist_ok=True)
    (home / ".env").write_text(f"FAKE_API_KEY={key}\n")
    run_cli("backend", "add", name, "--provider", provider, "--api-base", fake.base_url,
            "--model", name.split("/")[1], "--key-env", "FAKE_API_KEY")


def test_a_request_that_needs_litellm_waits_while_it_starts(broke_home, fake, monkeypatch):
    """`broke start` returns once the front proxy answers; a translated request waits for LiteLLM."""
    monkeypatch.setenv("BROKE_NATIVE", "1")
    add_fake_backend(broke_home, fake)
    run_cli("swap", "sonnet=fake/model-a")
    run_cli("start", "--port", str(free_port()))
    try:
        record = read_record(broke_home)
        token = json.loads(run_cli("connect", "--json").stdout)["token"]
        assert record.litellm.pid > 0  # sonnet's clients speak messages: LiteLLM is needed, and starting
        chat = httpx.post(record.base_url + "/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {token}"},
                          json={"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200 and chat.headers["x-broke-via"] == "native"
        answer = httpx.post(record.base_url + "/v1/messages", timeout=180,
                            headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
                            json={"model": "sonnet", "max_tokens": 16,
                                  "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-broke-via"] == "litellm"
        assert answer.json()["content"][0]["text"] == "fake:model-a:key-one"
        assert httpx.get(record.base_url + "/health", timeout=10).json()["litellm"] == "up"
    finally:
        run_cli("stop")
