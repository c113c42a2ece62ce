"""Answers that go wrong, in process (proxy_harness.py): errors scrubbed of every secret before a client
sees them, and answers that break after their headers failed over where nothing reached the client yet,
bounded in time, and counted as what they were."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from broke import changes
from broke.state.store import StateStore
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import FakeLiteLLM, Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(30)

StartProxy = Callable[..., "Proxy"]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"
KEY_VALUES = ("key-one", "key-two")


def leaked(proxy: Proxy, answer: httpx.Response) -> list[str]:
    """The secrets an answer carries in its body or headers: provider keys, the master key, the client's token."""
    seen = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
    return [s for s in (*KEY_VALUES, proxy.master_key, proxy.token) if s in seen]


def requests_metric(proxy: Proxy) -> str:
    return "\n".join(line for line in proxy.metrics().splitlines()
                     if line.startswith("broke_requests_total"))


# ---- item 3: secrets never reach a client ----------------------------------------------------------

def test_the_last_error_passed_through_is_scrubbed_of_the_keys_it_echoes(cloud: FakeProvider,
                                                                        start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    cloud.fail("401-echo")  # both keys answer 401 quoting the key and the headers they were sent
    answer = proxy.chat()
    assert answer.status_code == 401 and answer.headers["x-broke-attempts"] == "2"
    assert "Incorrect API key provided: [redacted]" in answer.json()["error"]["message"]
    assert answer.headers["x-echoed-key"] == "[redacted]"
    assert leaked(proxy, answer) == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_relayed_error_is_scrubbed_of_the_key_it_echoes(cloud: FakeProvider, start_proxy: StartProxy,
                                                          stream: bool) -> None:
    proxy = start_proxy()
    cloud.fail("400-echo")  # not retryable: relayed as it is, but for the secrets
    answer = proxy.chat(stream=stream)
    assert answer.status_code == 400 and answer.headers["x-broke-attempts"] == "1"
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert leaked(proxy, answer) == []


def test_an_error_relayed_from_litellm_is_scrubbed_of_the_master_key(cloud: FakeProvider, litellm: FakeLiteLLM,
                                                                     gemini: str, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    message = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    for status in (400, 401):  # relayed, and passed through after the last attempt
        litellm.echo_status = status
        answer = proxy.post("/v1/messages", message, headers={"anthropic-version": "2023-06-01"})
        assert answer.status_code == status and answer.headers["x-broke-via" if status == 400 else "x-broke-slot"]
        assert "Authentication Error: Bearer [redacted]" in answer.text
        assert leaked(proxy, answer) == []


def test_a_successful_answer_is_not_scrubbed(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()  # the fake's answer names the key it got: a 200 is the upstream's own content
    assert proxy.chat().json()["choices"][0]["message"]["content"] == "fake:model-a:key-one"


# ---- item 6: answers that break after their headers -------------------------------------------------

@pytest.mark.parametrize("mode", ["cut", "stall", "garbage"])
def test_a_non_streamed_answer_broken_after_its_headers_falls_over(cloud: FakeProvider, store: StateStore,
                                                                   start_proxy: StartProxy, mode: str) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy(first_byte_timeout_s=0.5)
    cloud.fail(mode, model="model-a")
    started = time.monotonic()
    answer = proxy.chat()
    assert time.monotonic() - started < 5
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == MODEL_B and answer.headers["x-broke-attempts"] == "2"
    assert answer.json()["choices"][0]["message"]["content"] == "fake:model-b:key-one"
    assert proxy.health().models[MODEL_A].status == "cooldown"
    assert f'backend="{MODEL_B}",status="200"' in requests_metric(proxy)


@pytest.mark.parametrize(("mode", "status", "says"), [("cut", 502, "cut after its headers"),
                                                      ("stall", 504, "stalled after its headers"),
                                                      ("garbage", 502, "not a JSON object")])
def test_a_broken_answer_with_nothing_to_fall_back_on_is_a_counted_error(
        cloud: FakeProvider, start_proxy: StartProxy, mode: str, status: int, says: str) -> None:
    proxy = start_proxy(first_byte_timeout_s=0.5)
    cloud.fail(mode)
    answer = proxy.chat()
    assert answer.status_code == status and says in answer.json()["error"]["message"]
    assert f'status="{status}"' in requests_metric(proxy) and 'status="200"' not in requests_metric(proxy)


@pytest.mark.parametrize("mode", ["stall-stream", "empty-stream"])
def test_a_stream_that_breaks_before_its_first_event_falls_over(cloud: FakeProvider, store: StateStore,
                                                                start_proxy: StartProxy, mode: str) -> None:
    """Its headers came, but nothing of it has reached the client yet: the next candidate answers."""
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy(first_byte_timeout_s=0.5)
    cloud.fail(mode, model="model-a")
    started = time.monotonic()
    answer = proxy.chat(stream=True)
    assert time.monotonic() - started < 5
    assert answer.status_code == 200 and answer.headers["x-broke-backend"] == MODEL_B, answer.text
    assert "[DONE]" in answer.text
    assert "event: error" not in answer.text
    assert proxy.health().models[MODEL_A].status == "cooldown"


@pytest.mark.parametrize(("mode", "status", "says"), [("stall-stream", 504, "stalled before its first event"),
                                                      ("empty-stream", 502, "ended before its first event")])
def test_a_stream_that_breaks_before_its_first_event_with_nothing_to_fall_back_on_is_an_error(
        cloud: FakeProvider, start_proxy: StartProxy, mode: str, status: int, says: str) -> None:
    proxy = start_proxy(first_byte_timeout_s=0.5)
    cloud.fail(mode)
    answer = proxy.chat(stream=True)
    assert answer.status_code == status and says in answer.json()["error"]["message"], answer.text
    assert f'status="{status}"' in requests_metric(proxy) and 'status="200"' not in requests_metric(proxy)


def test_a_stream_cut_midway_ends_with_an_error_event_and_is_counted_as_an_error(
        cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    cloud.fail("cut-stream")
    answer = proxy.chat(stream=True)
    assert answer.status_code == 200  # its headers had gone out
    assert '"content": "fake"' in answer.text or '"content":"fake"' in answer.text
    assert answer.text.rstrip().endswith("}") and "event: error" in answer.text and "stream_cut" in answer.text
    assert "[DONE]" not in answer.text
    metric = requests_metric(proxy)
    assert 'status="502"' in metric and 'status="200"' not in metric


def test_a_stream_stalled_midway_is_ended_within_the_bound(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    cloud.chunk_delay_s = 3.0  # every gap between events is longer than the bound
    proxy = start_proxy(first_byte_timeout_s=0.5)
    started = time.monotonic()
    answer = proxy.chat(stream=True)
    assert time.monotonic() - started < 2.5
    assert "event: error" in answer.text and "stalled" in answer.text
    assert 'status="502"' in requests_metric(proxy)


def test_a_whole_stream_is_still_a_200(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    answer = proxy.chat(stream=True)
    assert "[DONE]" in answer.text and "event: error" not in answer.text
    assert 'status="200"' in requests_metric(proxy)
