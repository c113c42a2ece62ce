"""Recovery with the real gateway (front proxy + LiteLLM) against a fault-injecting fake provider:
a blip never takes a slot down, broke's own LiteLLM dying is never blamed on a backend, and a
restart reads keys afresh."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broke.control.runfiles import read_record
from broke.health import load_health
from conftest import add_fake_backends, module_home, run_cli, serving
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running gateway whose `sonnet` has one backend (two keys) on the fake provider."""
    home = tmp_path_factory.mktemp("recovery") / "home"
    fake = FakeProvider().start()
    with module_home(home):
        add_fake_backends(home, fake, "model-a", keys=("key-one", "key-two"))
        run_cli("swap", "sonnet=fake/model-a")
        try:
            with serving("--wait") as (port, token):
                yield {"home": home, "fake": fake, "url": f"http://127.0.0.1:{port}", "token": token}
        finally:
            fake.stop()


@pytest.fixture
def gw(gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("BROKE_HOME", str(gateway["home"]))
    gateway["fake"].clear()
    run_cli("key-state", "set", "FAKE_API_KEY", "healthy")
    run_cli("model-state", "set", "fake/model-a", "healthy")
    return gateway


def post(gw: dict[str, Any], path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw["url"] + path, json=body, headers={"authorization": f"Bearer {gw['token']}"}, timeout=180)


CHAT = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "sonnet", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


def health(gw: dict[str, Any]) -> Any:
    return load_health(Path(gw["home"]) / "health.json")


def test_a_blip_of_the_only_backend_is_over_by_the_next_request(gw: dict[str, Any]) -> None:
    gw["fake"].fail("500", model="model-a", times=1)
    assert post(gw, "/v1/chat/completions", CHAT).status_code == 500  # the blip, passed through honestly
    ended = time.monotonic()
    answer = post(gw, "/v1/chat/completions", CHAT)
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - ended < 2  # the next request, not 30-60 s later
    assert health(gw).models["fake/model-a"].status == "healthy"


def test_a_rate_limit_of_every_key_is_over_by_the_next_request(gw: dict[str, Any]) -> None:
    gw["fake"].fail("429", model="model-a", times=2)  # both keys, Retry-After: 1
    assert post(gw, "/v1/chat/completions", CHAT).status_code == 429
    answer = post(gw, "/v1/chat/completions", CHAT)
    assert answer.status_code == 200, answer.text


def test_litellm_killed_is_restarted_and_no_backend_is_blamed(tmp_path: Path) -> None:
    """A gateway that sends everything through LiteLLM (BROKE_NATIVE=0: with native forwarding on, broke
    speaks every API the fake does, so nothing would need LiteLLM)."""
    fake = FakeProvider().start()
    with module_home(tmp_path / "home") as mp:
        mp.setenv("BROKE_NATIVE", "0")
        add_fake_backends(tmp_path / "home", fake, "model-a", keys=("key-one", "key-two"))
        run_cli("swap", "sonnet=fake/model-a")
        try:
            with serving("--wait") as (port, token):
                gw = {"home": tmp_path / "home", "url": f"http://127.0.0.1:{port}", "token": token}
                assert post(gw, "/v1/messages", MESSAGES).headers["x-broke-via"] == "litellm"
                record = read_record(Path(gw["home"]))
                assert record is not None and record.litellm.pid > 0
                os.kill(record.litellm.pid, signal.SIGKILL)
                time.sleep(0.5)
                killed = time.time()
                answer = post(gw, "/v1/chat/completions", CHAT)  # finds LiteLLM gone, starts it again, and is served
                assert answer.status_code == 200, answer.text
                assert time.time() - killed < 120
                now = health(gw)
                assert {n: r.reason for n, r in now.models.items() if r.updated_at >= killed} == {}  # nothing blamed
                assert {n: r.reason for n, r in now.keys.items() if r.updated_at >= killed} == {}
                restarted = read_record(Path(gw["home"]))
                assert restarted is not None and restarted.litellm.pid != record.litellm.pid
        finally:
            fake.stop()


def test_restart_reads_keys_afresh_and_forgets_an_auth_bench(gw: dict[str, Any]) -> None:
    gw["fake"].fail("401", key="key-one", times=1)
    assert post(gw, "/v1/chat/completions", CHAT).status_code == 200  # key two answers
    assert health(gw).keys["FAKE_API_KEY"].status == "auth_failed"
    run_cli("key-state", "set", "FAKE_API_KEY_2", "blocked")  # a block by hand survives a restart
    try:
        port = gw["url"].rsplit(":", 1)[1]
        run_cli("restart", "--port", port)
        keys = health(gw).keys
        assert "FAKE_API_KEY" not in keys and keys["FAKE_API_KEY_2"].status == "blocked"
    finally:
        run_cli("key-state", "set", "FAKE_API_KEY_2", "healthy")


def test_a_backend_added_while_running_is_served_or_the_cli_says_restart(gw: dict[str, Any]) -> None:
    added = run_cli("backend", "add", "fake/model-c", "--provider", "openai-compatible", "--model", "model-c",
                    "--api-base", gw["fake"].base_url, "--key-env", "FAKE_API_KEY")
    assert "broke restart" not in added.stdout  # every client API is served at once (broke translates)
    needs = run_cli("backend", "add", "gemini/model-d", "--provider", "gemini", "--model", "model-d",
                    "--key-env", "FAKE_API_KEY")  # a provider only LiteLLM speaks
    assert "Anthropic messages (Claude Code)" in needs.stdout and "broke restart" in needs.stdout
    try:
        run_cli("swap", "sonnet=fake/model-c")
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)):
            answer = post(gw, path, body)
            assert answer.status_code == 200 and answer.headers["x-broke-backend"] == "fake/model-c", answer.text
        run_cli("swap", "sonnet=gemini/model-d")
        refused = post(gw, "/v1/messages", MESSAGES)
        assert refused.status_code == 400 and "broke restart" in refused.json()["error"]["message"]
    finally:
        run_cli("swap", "sonnet=fake/model-a")
        run_cli("backend", "remove", "fake/model-c")
        run_cli("backend", "remove", "gemini/model-d")
