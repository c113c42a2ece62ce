"""Upstream faults through the real gateway (front proxy, and LiteLLM with BROKE_NATIVE=0) against the
fake provider: errors that echo the key reach no client, answers that break after their headers fail
over or are counted as errors. Both paths; the fixtures are test_gateway.py's (first-byte bound 5 s)."""
from __future__ import annotations

import httpx
import pytest

from broke.control.runfiles import master_key
from conftest import run_cli
from test_gateway import chat, gateway, gw, post

__all__ = ["gateway", "gw"]  # the fixtures this module uses
pytestmark = pytest.mark.timeout(600)


def secrets_in(gw, answer: httpx.Response) -> list[str]:
    """The secrets an answer carries: provider keys, LiteLLM's master key, the client's token."""
    seen = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
    return [s for s in ("key-one", "key-two", master_key(gw["home"]), gw["token"]) if s in seen]


@pytest.mark.parametrize("mode", ["401-echo", "400-echo"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_error_that_echoes_the_key_reaches_no_client(gw, mode, stream):
    gw["fake"].fail(mode)
    leaks = []
    for path, body in (("/v1/chat/completions", chat(stream=stream)),
                       ("/v1/messages", {**chat(stream=stream), "max_tokens": 16})):
        answer = post(gw, path, body, headers={"anthropic-version": "2023-06-01"})
        assert answer.status_code >= 400, answer.text
        if secrets_in(gw, answer):
            leaks.append((path, secrets_in(gw, answer), answer.text[:300]))
    print(f"\nLEAKS {gw['via']} {mode} stream={stream}: {len(leaks)} of 2")
    assert leaks == []


@pytest.mark.parametrize("mode", ["cut", "stall", "garbage"])
def test_a_non_streamed_answer_broken_after_its_headers_falls_over(gw, mode):
    run_cli("fallback", "sonnet", "fake/model-b")
    gw["fake"].fail(mode, model="model-a")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == "fake/model-b"
    assert answer.json()["choices"][0]["message"]["content"].startswith("fake:model-b:")


def test_a_stream_cut_midway_is_counted_as_an_error(gw):
    """Natively the client has the first events, then an error event, and the request counts as a 502.
    Through LiteLLM it depends on timing: LiteLLM either reads the cut before its own headers and
    answers 5xx, or has begun its stream and ends it unfinished (no `[DONE]`), which counts as a 502."""
    before = httpx.get(gw["url"] + "/metrics", timeout=10).text
    gw["fake"].fail("cut-stream", model="model-a")
    answer = post(gw, "/v1/chat/completions", chat(stream=True))
    assert "[DONE]" not in answer.text
    if gw["via"] == "native":
        assert answer.status_code == 200 and "event: error" in answer.text and "stream_cut" in answer.text
    metrics = httpx.get(gw["url"] + "/metrics", timeout=10).text
    counted = [line for line in metrics.splitlines() if line not in before and line.startswith("broke_requests_total")]
    assert counted and not any('status="200"' in line for line in counted), counted
    assert any(f'status="{502 if answer.status_code == 200 else answer.status_code}"' in line for line in counted)


def test_a_streamed_request_answered_with_garbage_falls_over(gw, request):
    if gw["via"] == "litellm":  # known, not fixed: LiteLLM turns it into an empty stream that ends "stop"
        request.node.add_marker(pytest.mark.xfail(strict=True, reason="LiteLLM streams garbage as an empty success"))
    run_cli("fallback", "sonnet", "fake/model-b")
    gw["fake"].fail("garbage", model="model-a")
    answer = post(gw, "/v1/chat/completions", chat(stream=True))
    assert answer.status_code == 200 and answer.headers["x-broke-backend"] == "fake/model-b", answer.text
