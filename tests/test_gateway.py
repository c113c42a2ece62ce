"""The real gateway (LiteLLM + front proxy) against a fake provider on loopback."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from broke.procs import free_port, is_ours
from conftest import add_fake_backends, module_home, run_cli, serving
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", params=["native", "litellm"])
def gateway(tmp_path_factory, request):
    """A running gateway with two fake backends (two keys each) and fallbacks, shared by this module.

    Every test runs twice: with chat completions forwarded natively by the front proxy, and with
    everything sent through LiteLLM (BROKE_NATIVE=0).
    """
    home = tmp_path_factory.mktemp("gateway") / "home"
    fake = FakeProvider().start()
    with module_home(home) as mp:
        mp.setenv("BROKE_NATIVE", "1" if request.param == "native" else "0")
        mp.setenv("BROKE_FIRST_BYTE_TIMEOUT", "5")
        mp.setenv("BROKE_BODY_LIMIT_MB", "1")
        add_fake_backends(home, fake, "model-a", "model-b", keys=("key-one", "key-two"))
        run_cli("backend", "add", "dead/model-x", "--provider", "openai-compatible", "--api-base",
                f"http://127.0.0.1:{free_port()}/v1", "--model", "model-x")
        try:
            with serving() as (port, token):
                yield {"home": home, "fake": fake, "url": f"http://127.0.0.1:{port}", "token": token,
                       "via": request.param}
        finally:
            fake.stop()


@pytest.fixture
def gw(gateway, monkeypatch):
    """Per test: this module's home, default routing, no failure rules, fresh health."""
    monkeypatch.setenv("BROKE_HOME", str(gateway["home"]))
    gateway["fake"].clear()
    gateway["fake"].chunk_delay_s = 0.0
    (gateway["home"] / "health.json").unlink(missing_ok=True)
    run_cli("swap", "sonnet=fake/model-a", "opus=fake/model-b", "gpt-5-codex=fake/model-a")
    CliRunner().invoke(app, ["fallback", "sonnet", "--clear"])
    CliRunner().invoke(app, ["key-policy", "openai-compatible", "--mode", "rotate_on_rate_limit",
                             "--order", ""])
    CliRunner().invoke(app, ["model-policy", "sonnet", "--no-cooldown-last"])
    return gateway


def post(gw, path, body, token=None, headers=None, **kw):
    headers = {"authorization": f"Bearer {token or gw['token']}", **(headers or {})}
    return httpx.post(gw["url"] + path, json=body, headers=headers, timeout=30, **kw)


def chat(model="sonnet", text="hi", **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sse_text(raw: str) -> str:
    """The text deltas of an SSE stream, whichever API produced it."""
    out = []
    for line in raw.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        for choice in event.get("choices") or []:
            out.append((choice.get("delta") or {}).get("content") or "")
        if event.get("type") == "content_block_delta":
            out.append(event["delta"].get("text", ""))
        if event.get("type") == "response.output_text.delta":
            out.append(event.get("delta", ""))
    return "".join(out)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions(gw, stream):
    answer = post(gw, "/v1/chat/completions", chat("claude-sonnet-4-5", stream=stream))
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-slot"] == "sonnet"
    assert answer.headers["x-broke-backend"] == "fake/model-a"
    assert answer.headers["x-broke-attempts"] == "1"
    assert answer.headers["x-broke-via"] == gw["via"]  # chat completions need no translation here
    assert int(answer.headers["x-broke-generation"]) > 0
    text = sse_text(answer.text) if stream else answer.json()["choices"][0]["message"]["content"]
    assert text == "fake:model-a:key-one"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_with_thinking(gw, stream):
    body = {"model": "claude-opus-5-5", "max_tokens": 64, "stream": stream,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(gw["url"] + "/v1/messages", json=body, timeout=30,
                        headers={"x-api-key": gw["token"], "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == "fake/model-b"
    assert answer.headers["x-broke-via"] == "litellm"  # messages to an OpenAI-compatible server: translated
    # The fake thinks when asked (a thinking block comes first); the text is the answer.
    blocks = [] if stream else [b for b in answer.json()["content"] if b["type"] == "text"]
    text = sse_text(answer.text) if stream else blocks[0]["text"]
    assert text == "fake:model-b:key-one"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api(gw, stream):
    answer = post(gw, "/v1/responses", {"model": "gpt-5-codex", "input": "hi", "stream": stream})
    assert answer.status_code == 200, answer.text
    if stream:
        assert sse_text(answer.text) == "fake:model-a:key-one"
    else:
        content = answer.json()["output"][0]["content"][0]["text"]
        assert content == "fake:model-a:key-one"


def test_unknown_model_is_400_and_never_forwarded(gw):
    gw["fake"].reset_requests()
    answer = post(gw, "/v1/chat/completions", chat("gpt-4o"))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_model"
    assert gw["fake"].requests == []


def test_models_lists_the_slots(gw):
    answer = httpx.get(gw["url"] + "/v1/models", headers={"authorization": f"Bearer {gw['token']}"})
    assert answer.status_code == 200
    assert {"sonnet", "opus", "gpt-5-codex", "auto"} <= {m["id"] for m in answer.json()["data"]}


def test_missing_or_bad_token_is_401_then_429(gw):
    assert httpx.post(gw["url"] + "/v1/chat/completions", json=chat()).status_code == 401
    codes = [post(gw, "/v1/chat/completions", chat(), token=f"wrong-{i}").status_code for i in range(12)]
    assert codes[0] == 401 and codes[-1] == 429
    assert post(gw, "/v1/chat/completions", chat()).status_code == 200  # the real token still works


def test_oversized_body_is_413(gw):
    answer = post(gw, "/v1/chat/completions", chat(text="x" * (1024 * 1024 + 10)))
    assert answer.status_code == 413


def test_swap_changes_the_very_next_request(gw):
    assert post(gw, "/v1/chat/completions", chat()).headers["x-broke-backend"] == "fake/model-a"
    run_cli("swap", "sonnet", "fake/model-b")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.headers["x-broke-backend"] == "fake/model-b"
    assert answer.json()["choices"][0]["message"]["content"] == "fake:model-b:key-one"


def test_route_and_explain_name_what_the_gateway_uses(gw):
    run_cli("fallback", "sonnet", "fake/model-b")
    for rule in (None, "drop"):
        if rule:
            gw["fake"].fail(rule, model="model-a")
            post(gw, "/v1/chat/completions", chat())  # puts model-a in cooldown
        routed = json.loads(run_cli("route", "sonnet", "--json").stdout)["chosen"]["backend"]
        explained = json.loads(run_cli("explain", "sonnet", "--json").stdout)["chosen"]["backend"]
        used = post(gw, "/v1/chat/completions", chat()).headers["x-broke-backend"]
        assert routed == explained == used


def test_dead_primary_falls_over_within_a_second(gw):
    run_cli("fallback", "sonnet", "fake/model-b")
    gw["fake"].fail("drop", model="model-a")
    started = time.monotonic()
    answer = post(gw, "/v1/chat/completions", chat())
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.headers["x-broke-backend"] == "fake/model-b"
    assert answer.headers["x-broke-attempts"] == "2"
    assert elapsed < 1.0
    states = {r["name"]: r["status"] for r in json.loads(run_cli("model-state", "--json").stdout)}
    assert states["fake/model-a"] == "cooldown"


def test_unreachable_backend_and_hang_fall_over(gw):
    run_cli("swap", "haiku", "dead/model-x")
    run_cli("fallback", "haiku", "fake/model-b")
    answer = post(gw, "/v1/chat/completions", chat("haiku"))
    assert answer.headers["x-broke-backend"] == "fake/model-b"
    assert answer.headers["x-broke-attempts"] == "2"
    run_cli("fallback", "sonnet", "fake/model-b")
    gw["fake"].fail("hang", model="model-a")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.status_code == 200 and answer.headers["x-broke-backend"] == "fake/model-b"


def test_a_corrupt_health_file_does_not_turn_a_failover_into_a_500(gw):
    run_cli("fallback", "sonnet", "fake/model-b")
    (gw["home"] / "health.json").write_text('{"generation": 1, "models": {"x": {"status": "nope"}}}')
    gw["fake"].fail("500", model="model-a")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.status_code == 200 and answer.headers["x-broke-backend"] == "fake/model-b"
    states = {r["name"]: r["status"] for r in json.loads(run_cli("model-state", "--json").stdout)}
    assert states["fake/model-a"] == "cooldown"  # the file was rewritten clean
    kept = list(gw["home"].glob("health.json.corrupt-*"))
    assert len(kept) == 1 and '"nope"' in kept[0].read_text()
    kept[0].unlink()


def test_health_and_metrics_refuse_a_foreign_host_name(gw):
    for path in ("/health", "/metrics"):
        assert httpx.get(gw["url"] + path).status_code == 200
        assert httpx.get(gw["url"] + path, headers={"host": "rebind.example"}).status_code == 403


def test_huge_request_headers_are_refused(gw):
    answer = post(gw, "/v1/chat/completions", chat(), headers={"x-pad": "a" * 1_000_000})
    assert answer.status_code == 431
    assert post(gw, "/v1/chat/completions", chat()).status_code == 200


def test_429_on_key_one_is_served_by_key_two(gw):
    gw["fake"].fail("429", key="key-one")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "fake:model-a:key-two"
    assert answer.headers["x-broke-attempts"] == "2"
    keys = {r["name"]: r for r in json.loads(run_cli("key-state", "--json").stdout)}
    assert keys["FAKE_API_KEY"]["status"] == "cooldown" and keys["FAKE_API_KEY"]["reason"] == "429"
    assert keys["FAKE_API_KEY_2"]["status"] == "unknown"
    # The cooled-down key is skipped by the next request: one attempt, key two.
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.headers["x-broke-attempts"] == "1"
    log = (gw["home"] / "run" / "rotation.log").read_text()
    assert '"reason": "429"' in log and "key-one" not in log and "key-two" not in log


def test_key_state_set_by_hand_applies_live(gw):
    run_cli("key-state", "set", "FAKE_API_KEY", "blocked")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.json()["choices"][0]["message"]["content"] == "fake:model-a:key-two"
    run_cli("key-state", "set", "FAKE_API_KEY", "healthy")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.json()["choices"][0]["message"]["content"] == "fake:model-a:key-one"


def test_round_robin_key_policy_applies_without_restart(gw):
    run_cli("key-policy", "openai-compatible", "--mode", "round_robin")
    texts = [post(gw, "/v1/chat/completions", chat()).json()["choices"][0]["message"]["content"]
             for _ in range(4)]
    assert sorted(texts) == ["fake:model-a:key-one"] * 2 + ["fake:model-a:key-two"] * 2
    assert texts[0] != texts[1]


def test_all_candidates_failing_passes_the_last_error_through(gw):
    gw["fake"].fail("500", model="model-a")
    answer = post(gw, "/v1/chat/completions", chat())
    assert answer.status_code >= 500
    assert answer.headers["x-broke-attempts"] == "1"  # the 500 benches the backend: key two is not tried
    gw["fake"].clear()
    # Only candidates in cooldown are left: by default not tried, the request fails at once.
    before = len(gw["fake"].requests)
    again = post(gw, "/v1/chat/completions", chat())
    assert again.status_code == 503 and "--cooldown-last" in again.json()["error"]["message"]
    assert len(gw["fake"].requests) == before
    assert CliRunner().invoke(app, ["route", "sonnet"]).exit_code == 1
    # The visible policy tries them last, and route, explain and the gateway agree on it.
    run_cli("model-policy", "sonnet", "--cooldown-last")
    routed = json.loads(run_cli("route", "sonnet", "--json").stdout)
    assert routed["cooldown_last"] and routed["chosen"]["last_resort"]
    assert "last resort" in run_cli("explain", "sonnet").stdout
    again = post(gw, "/v1/chat/completions", chat())
    assert again.status_code == 200 and again.headers["x-broke-backend"] == routed["chosen"]["backend"]


@pytest.mark.parametrize("block", ["keys", "backend"])
def test_blocked_gets_no_traffic_even_with_nothing_else_left(gw, block):
    """Blocked by hand (every key, or the backend): zero upstream requests, and every surface agrees."""
    if block == "keys":
        run_cli("key-state", "set", "FAKE_API_KEY", "blocked")
        run_cli("key-state", "set", "FAKE_API_KEY_2", "blocked")
    else:
        run_cli("model-state", "set", "fake/model-a", "blocked")
    run_cli("model-policy", "sonnet", "--cooldown-last")  # a last resort is for cooldowns, never blocks
    before = len(gw["fake"].requests)
    answers = [post(gw, path, body) for path, body in (
        ("/v1/chat/completions", chat()), ("/v1/chat/completions", chat(stream=True)),
        ("/v1/messages", {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"model": "sonnet", "input": "hi"}))]
    assert [a.status_code for a in answers] == [503] * 4
    assert all(a.headers["x-broke-attempts"] == "0" for a in answers)
    assert len(gw["fake"].requests) == before  # not one request reached the provider
    route = CliRunner().invoke(app, ["route", "sonnet", "--json"])
    assert route.exit_code == 1 and json.loads(route.stdout)["chosen"] is None
    assert json.loads(run_cli("explain", "sonnet", "--json").stdout)["attempts"] == []


def test_stream_arrives_chunk_by_chunk(gw):
    gw["fake"].chunk_delay_s = 0.4
    arrivals = []
    started = time.monotonic()
    with httpx.stream("POST", gw["url"] + "/v1/chat/completions", json=chat(stream=True), timeout=30,
                      headers={"authorization": f"Bearer {gw['token']}"}) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 3
    assert arrivals[-1] - arrivals[0] >= 0.7  # the first chunk came long before the last was written


def test_profile_token_restricts_slots_and_rate(gw):
    run_cli("profile", "new", "bot", "--slots", "opus", "--rpm", "3")
    token = json.loads(run_cli("connect", "--profile", "bot", "--json").stdout)["token"]
    assert token != gw["token"]
    assert post(gw, "/v1/chat/completions", chat("sonnet"), token=token).status_code == 403
    codes = [post(gw, "/v1/chat/completions", chat("opus"), token=token).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_profile_token_is_not_answered_through_a_fallback_to_a_slot_it_may_not_use(gw):
    """haiku falls back to the slot sonnet; a profile allowed only haiku never reaches sonnet's backend."""
    run_cli("profile", "new", "haikuonly", "--slots", "haiku")
    token = json.loads(run_cli("connect", "--profile", "haikuonly", "--json").stdout)["token"]
    run_cli("swap", "haiku", "dead/model-x")
    run_cli("fallback", "haiku", "sonnet")
    try:
        before = len(gw["fake"].requests)
        answer = post(gw, "/v1/chat/completions", chat("haiku"), token=token)
        assert answer.status_code >= 500, answer.text
        assert "fake/model-a" not in answer.headers.get("x-broke-backend", "")
        assert gw["fake"].requests[before:] == []  # sonnet's backend was never asked
        # the client's own token still follows the chain to sonnet
        answer = post(gw, "/v1/chat/completions", chat("haiku"))
        assert answer.status_code == 200 and answer.headers["x-broke-backend"] == "fake/model-a"
    finally:
        CliRunner().invoke(app, ["fallback", "haiku", "--clear"])


def test_profile_header_narrows_a_token_and_never_widens_it(gw):
    """X-Broke-Profile: P on the client token gets P's limits; it cannot widen a token, or name a stranger."""
    run_cli("profile", "new", "narrowhdr", "--slots", "opus", "--rpm", "2")
    run_cli("profile", "new", "widehdr", "--slots", "sonnet,opus")
    as_p = {"x-broke-profile": "narrowhdr"}
    assert post(gw, "/v1/chat/completions", chat("sonnet"), headers=as_p).status_code == 403
    codes = [post(gw, "/v1/chat/completions", chat("opus"), headers=as_p).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # P's rpm, shared with P's own token
    p_token = json.loads(run_cli("connect", "--profile", "narrowhdr", "--json").stdout)["token"]
    assert post(gw, "/v1/chat/completions", chat("opus"), token=p_token).status_code == 429
    listed = httpx.get(gw["url"] + "/v1/models", headers={"authorization": f"Bearer {gw['token']}", **as_p})
    assert [m["id"] for m in listed.json()["data"]] == ["opus"]
    # A profile token cannot switch to another profile (that could widen it), even a wider one.
    switched = post(gw, "/v1/chat/completions", chat("sonnet"), token=p_token, headers={"x-broke-profile": "widehdr"})
    assert switched.status_code == 400 and "X-Broke-Profile" in switched.json()["error"]["message"]
    assert post(gw, "/v1/chat/completions", chat("opus"), token=p_token,
                headers={"x-broke-profile": "narrowhdr"}).status_code == 429  # its own name: no change
    unknown = post(gw, "/v1/chat/completions", chat("opus"), headers={"x-broke-profile": "nosuch"})
    assert unknown.status_code == 400 and "nosuch" in unknown.json()["error"]["message"]


def test_probe_and_metrics(gw):
    result = run_cli("probe", "sonnet", "--json")
    probe = json.loads(result.stdout)
    assert probe["status"] == 200 and probe["backend"] == "fake/model-a" and probe["seconds"] > 0
    rows = json.loads(run_cli("metrics", "--json").stdout)
    sonnet = [r for r in rows if r["slot"] == "sonnet" and r["backend"] == "fake/model-a"]
    assert sonnet and sonnet[0]["requests"] >= 1 and sonnet[0]["p50_ms"] is not None
    assert sonnet[0]["unpriced"] >= 1 and sonnet[0]["cost_usd"] == 0  # fake/model-a has no price
    text = httpx.get(gw["url"] + "/metrics").text
    assert "broke_requests_total{" in text and "broke_state_generation" in text


def test_doctor_live_checks(gw):
    result = CliRunner().invoke(app, ["doctor", "--json"])
    report = json.loads(result.stdout)
    assert report["live"]["gateway"]["running"] is True and report["live"]["gateway"]["healthy"] is True
    assert report["live"]["backends"]["fake/model-a"]["reachable"] is True


def test_50_clients_times_20_requests_none_lost_or_duplicated(gw):
    import asyncio

    import psutil

    from broke.control.runfiles import read_record

    front = psutil.Process(read_record(gw["home"]).front.pid)
    gw["fake"].reset_requests()
    rss_before = front.memory_info().rss

    async def client(number: int, http: httpx.AsyncClient) -> list[tuple[str, str]]:
        seen = []
        for i in range(20):
            tag = f"c{number}-r{i}"
            answer = await http.post(gw["url"] + "/v1/chat/completions", json=chat(text=tag),
                                     headers={"authorization": f"Bearer {gw['token']}"})
            seen.append((tag, answer.status_code))
        return seen

    async def main():
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            return await asyncio.gather(*(client(n, http) for n in range(50)))

    results = [item for batch in asyncio.run(main()) for item in batch]
    assert len(results) == 1000 and all(status == 200 for _, status in results)
    received = [r["messages_text"] for r in gw["fake"].requests]
    assert sorted(received) == sorted(tag for tag, _ in results)  # each exactly once
    growth_mb = (front.memory_info().rss - rss_before) / 2**20
    assert growth_mb < 64, f"front proxy grew {growth_mb:.1f} MB over 1000 requests"


def test_stale_record_is_detected_and_never_killed(tmp_path, monkeypatch):
    """A record whose PID now belongs to another program is cleaned, not signalled."""
    from broke.control.runfiles import GatewayRecord, write_record
    from broke.procs import ProcessRecord

    home = tmp_path / "stale"
    monkeypatch.setenv("BROKE_HOME", str(home))
    bystander = threading.current_thread()  # this test process stands in for an unrelated program
    me = ProcessRecord(os.getpid(), 12345.0, 1, "x.log")  # right PID, wrong creation time
    write_record(home, GatewayRecord(front=me, litellm=me))
    assert not is_ours(me)
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["running"] is False and status["stale"] is True
    run_cli("stop")
    assert bystander.is_alive()
    assert not (home / "run" / "gateway.json").exists()


def test_stop_leaves_no_process_behind(tmp_path, monkeypatch):
    import psutil

    from broke.control.runfiles import read_record

    home = tmp_path / "own"
    monkeypatch.setenv("BROKE_HOME", str(home))
    run_cli("start", "--port", str(free_port()))
    record = read_record(home)
    processes = [psutil.Process(p.pid) for p in (record.front, record.litellm)]
    family = processes + [c for p in processes for c in p.children(recursive=True)]
    run_cli("stop")
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert alive == []
    assert not Path(home / "run" / "gateway.json").exists()
    assert "not running" in run_cli("status").stdout


EASY = "what is 2+2"
HARD = ("Refactor this multi-file Python service so the worker pool, the cache invalidation and the "
        "retry queue cannot deadlock; prove the lock ordering is safe, then write the migration plan, "
        "step by step, for a zero-downtime rollout across three regions.")


def test_auto_routes_each_prompt_to_a_tier(gw):
    easy = json.loads(run_cli("estimate", "--json", EASY).stdout)
    hard = json.loads(run_cli("estimate", "--json", HARD).stdout)
    assert easy["p_strong"] < hard["p_strong"]
    middle = (easy["p_strong"] + hard["p_strong"]) / 2
    run_cli("router", "thresholds", "--balanced", f"{middle:.6f}", "--premium", f"{middle:.6f}")
    run_cli("router", "tier", "basic", "fake/model-a")
    run_cli("router", "tier", "premium", "fake/model-b")
    try:
        answers = {text: post(gw, "/v1/chat/completions", chat("auto", text)) for text in (EASY, HARD)}
        assert answers[EASY].headers["x-broke-tier"] == "basic"
        assert answers[EASY].headers["x-broke-backend"] == "fake/model-a"
        assert answers[HARD].headers["x-broke-tier"] == "premium"
        assert answers[HARD].headers["x-broke-backend"] == "fake/model-b"
        for answer in answers.values():
            assert 0 <= float(answer.headers["x-broke-complexity"]) <= 1
            assert answer.headers["x-broke-quality-temperature"] in ("green", "yellow", "orange", "red")
        # The dashboard lists the decisions with their estimates, never the prompts.
        local = httpx.get(gw["url"] + "/ui/api/local", headers={"authorization": f"Bearer {gw['token']}"})
        decided = [(d["tier"], d["backend"]) for d in local.json()["decisions"][-2:]]
        assert decided == [("basic", "fake/model-a"), ("premium", "fake/model-b")]
        assert all(0 <= d["prompt_complexity"] <= 1 and d["p_strong"] is not None for d in local.json()["decisions"])
        assert EASY not in local.text and HARD not in local.text
        routed = json.loads(run_cli("route", "auto", "--prompt", EASY, "--json").stdout)
        assert routed["tier"] == "basic" and routed["chosen"]["backend"] == "fake/model-a"
        # A tier whose backends are down falls back to the next tier up.
        gw["fake"].fail("drop", model="model-a")
        fallen = post(gw, "/v1/chat/completions", chat("auto", EASY))
        assert fallen.status_code == 200
        assert fallen.headers["x-broke-tier"] == "basic" and fallen.headers["x-broke-backend"] == "fake/model-b"
    finally:
        run_cli("router", "tier", "basic")
        run_cli("router", "tier", "premium")


def test_benchmark_a_backend_through_the_gateway(gw, tmp_path):
    """`benchmark-sequential --backend ID` measures exactly that backend, through the running gateway."""
    gw["fake"].reset_requests()
    gw["fake"].chunk_delay_s = 0.01
    result = CliRunner().invoke(app, ["benchmark-sequential", "--backend", "fake/model-b", "--runs", "1", "--json"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)["models"][0]
    assert model["backend"] == "fake/model-b" and model["where"] == "gateway"
    assert model["complete"] and model["errors"] == []
    assert model["load_s"] is None and model["worker"] is None and model["peak_memory_bytes"] is None
    assert model["summary"]["ttft_s"] > 0 and model["summary"]["decode_tps"] > 0
    assert {r["model"] for r in gw["fake"].requests} == {"model-b"}  # warm-up and 3 prompts, none elsewhere
    assert len(gw["fake"].requests) == 4
    (gw["home"] / "baselines" / f"{json.loads(result.stdout)['id']}.json").unlink()
    bad = gw["home"] / "baselines" / "b-bad.json"
    bad.write_text("{not json")  # a bad record costs the `fastest` order, never a request
    try:
        assert post(gw, "/v1/chat/completions", chat()).status_code == 200
    finally:
        bad.unlink()


def test_provider_keys_stay_out_of_logs_metrics_argv_and_files(gw):
    """The front proxy holds provider keys for native forwarding: they reach the provider and nowhere else."""
    import psutil

    from broke.control.runfiles import read_record

    for stream in (False, True):
        assert post(gw, "/v1/chat/completions", chat(stream=stream)).status_code == 200
    gw["fake"].fail("401", key="key-one", times=1)  # a failure is logged and audited: still no key
    assert post(gw, "/v1/chat/completions", chat()).status_code == 200
    metrics = httpx.get(gw["url"] + "/metrics", timeout=10).text
    record = read_record(gw["home"])
    argv = " ".join(" ".join(psutil.Process(p.pid).cmdline()) for p in (record.front, record.litellm)
                    if p.pid > 0)
    files = [p for p in gw["home"].rglob("*") if p.is_file() and p.name != ".env"]
    for secret in ("key-one", "key-two"):
        assert secret not in metrics and secret not in argv
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
