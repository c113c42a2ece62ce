"""Every failover rule of the front proxy, in process: the proxy's ASGI app, a fake cloud, fake workers.

Setup lives in proxy_harness.py: `fake/model-a` and `fake/model-b` on the fake cloud, two keys
(`key-one`, `key-two`), sonnet on model-a; the fake answers `fake:{model}:{key}`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from broke import changes
from broke.health import HealthRecord
from broke.state.store import StateStore
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import FakeLiteLLM, Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(30)

StartProxy = Callable[..., "Proxy"]
Workers = Callable[[int], list[FakeProvider]]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"  # the harness's cloud backends
GEMINI = "gemini/fake-gemini"  # the harness's backend that only LiteLLM reaches (fixture `gemini`)
LOCAL = "mlx/tiny"  # a local model whose workers are FakeProviders


def text_of(answer: httpx.Response) -> str:
    """The text of a (non-streamed) chat completion."""
    return str(answer.json()["choices"][0]["message"]["content"])


def sent(fake: FakeProvider) -> list[tuple[str | None, str | None]]:
    """(model, key) of every request the fake received, in order."""
    return [(r["model"], r["key"]) for r in fake.requests]


def lasts(record: HealthRecord) -> float:
    """How long a health record's status was set for, in seconds."""
    assert record.until is not None
    return record.until - record.updated_at


# ---- one key fails: the next key of the same backend answers ---------------------------------------

@pytest.mark.parametrize("status", ["401", "403"])
def test_auth_failure_on_the_first_key_is_served_by_the_next_key(cloud: FakeProvider, start_proxy: StartProxy,
                                                                 status: str) -> None:
    proxy = start_proxy()
    cloud.fail(status, key="key-one")
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert text_of(answer) == "fake:model-a:key-two"
    assert answer.headers["x-broke-backend"] == MODEL_A and answer.headers["x-broke-attempts"] == "2"
    health = proxy.health()
    key = health.keys["FAKE_API_KEY"]
    assert (key.status, key.reason, key.failures) == ("auth_failed", "auth", 1)
    assert lasts(key) == pytest.approx(300, abs=3)
    assert "FAKE_API_KEY_2" not in health.keys and health.models == {}  # the backend is not marked down
    again = proxy.chat()  # the failed key sits out: one attempt, key two
    assert again.headers["x-broke-attempts"] == "1" and text_of(again) == "fake:model-a:key-two"
    assert sent(cloud) == [("model-a", "key-one"), ("model-a", "key-two"), ("model-a", "key-two")]


def test_429_on_the_first_key_cools_the_key_not_the_backend(cloud: FakeProvider, store: StateStore,
                                                             start_proxy: StartProxy) -> None:
    changes.set_key_policy(store, "openai-compatible", cooldown_s=7)
    proxy = start_proxy()
    cloud.fail("429", key="key-one")
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert text_of(answer) == "fake:model-a:key-two"
    assert answer.headers["x-broke-backend"] == MODEL_A and answer.headers["x-broke-attempts"] == "2"
    health = proxy.health()
    key = health.keys["FAKE_API_KEY"]
    assert (key.status, key.reason) == ("cooldown", "429")
    assert lasts(key) == pytest.approx(1, abs=0.5)  # the upstream's Retry-After: 1, within the policy's 7 s
    assert health.models == {}
    failover = [e for e in proxy.events() if e["event"] == "failover"]
    assert [(e["backend"], e["reason"], e["status"]) for e in failover] == [(MODEL_A, "429", 429)]
    assert failover[0]["key_ref"] == proxy.record.key_refs["FAKE_API_KEY"]  # a reference, never the key


# ---- the backend fails: its other keys are skipped, the fallback answers ----------------------------

@pytest.mark.parametrize(("mode", "reason"), [("408", "timeout"), ("500", "error")])
def test_backend_failure_benches_the_backend_and_the_fallback_answers(
        cloud: FakeProvider, store: StateStore, start_proxy: StartProxy, mode: str, reason: str) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy()
    cloud.fail(mode, model="model-a")
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert text_of(answer) == "fake:model-b:key-one"
    assert answer.headers["x-broke-backend"] == MODEL_B and answer.headers["x-broke-attempts"] == "2"
    assert sent(cloud) == [("model-a", "key-one"), ("model-b", "key-one")]  # model-a's key two is not tried
    health = proxy.health()
    model = health.models[MODEL_A]
    assert (model.status, model.reason) == ("cooldown", reason)
    assert lasts(model) == pytest.approx(1, abs=0.5)  # a first failure: the shortest backoff
    assert health.keys == {}


def test_timeout_before_the_first_byte_falls_over(cloud: FakeProvider, store: StateStore,
                                                  start_proxy: StartProxy) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy(first_byte_timeout_s=0.2)
    cloud.fail("hang", model="model-a")
    started = time.monotonic()
    answer = proxy.chat()
    assert time.monotonic() - started >= 0.2  # it waited for the first byte that long, no longer
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == MODEL_B and answer.headers["x-broke-attempts"] == "2"
    assert text_of(answer) == "fake:model-b:key-one"
    model = proxy.health().models[MODEL_A]
    assert (model.status, model.reason) == ("cooldown", "timeout")


def test_dropped_connection_falls_over(cloud: FakeProvider, store: StateStore, start_proxy: StartProxy) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy()
    cloud.fail("drop", model="model-a")
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == MODEL_B and answer.headers["x-broke-attempts"] == "2"
    assert text_of(answer) == "fake:model-b:key-one"
    model = proxy.health().models[MODEL_A]
    assert (model.status, model.reason) == ("cooldown", "error")


def test_every_candidate_failing_passes_the_last_error_through(cloud: FakeProvider, store: StateStore,
                                                               start_proxy: StartProxy) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy()
    cloud.fail("500", model="model-a")
    cloud.fail("429", model="model-b")
    answer = proxy.chat()
    assert answer.status_code == 429  # the last upstream answer: model-b's key two
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"
    assert answer.headers["retry-after"] == "1"  # the upstream's own headers come along
    assert answer.headers["x-broke-attempts"] == "3" and answer.headers["x-broke-slot"] == "sonnet"
    assert sent(cloud) == [("model-a", "key-one"), ("model-b", "key-one"), ("model-b", "key-two")]
    health = proxy.health()
    assert health.models[MODEL_A].status == "cooldown"
    assert {name: r.status for name, r in health.keys.items()} == {"FAKE_API_KEY": "cooldown",
                                                                    "FAKE_API_KEY_2": "cooldown"}


# ---- cooldown-last ----------------------------------------------------------------------------------

def cool_down_model_a(proxy: Proxy, cloud: FakeProvider) -> None:
    """A 500 puts sonnet's only backend in cooldown; the fake then answers again."""
    cloud.fail("500", model="model-a", times=1)
    assert proxy.chat().status_code == 500
    assert proxy.health().models[MODEL_A].status == "cooldown"


def test_a_blip_of_a_slots_only_backend_is_not_an_outage(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    cool_down_model_a(proxy, cloud)
    answer = proxy.chat()  # the very next request: the cooled backend is tried last, and answers
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == MODEL_A and answer.headers["x-broke-attempts"] == "1"
    model = proxy.health().models[MODEL_A]
    assert (model.status, model.failures) == ("healthy", 0)  # an answer forgives the failure


def test_a_slot_that_fails_fast_answers_503_with_retry_after(cloud: FakeProvider, store: StateStore,
                                                             start_proxy: StartProxy) -> None:
    changes.set_model_policy(store, "sonnet", cooldown_last=False)
    proxy = start_proxy()
    cool_down_model_a(proxy, cloud)
    answer = proxy.chat()
    assert answer.status_code == 503
    assert answer.headers["x-broke-attempts"] == "0"
    assert answer.headers["retry-after"] == "1"  # the backend's cooldown ends within a second
    assert "--cooldown-last" in answer.json()["error"]["message"]
    assert len(cloud.requests) == 1  # only the request that failed


def test_repeated_failures_back_off_and_an_answer_resets_them(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    cloud.fail("500", model="model-a", times=4)
    cooldowns = []
    for _ in range(4):
        assert proxy.chat().status_code == 500  # each request tries the only backend (last resort)
        cooldowns.append(round(lasts(proxy.health().models[MODEL_A])))
    assert cooldowns == [1, 2, 4, 8]
    assert proxy.chat().status_code == 200
    model = proxy.health().models[MODEL_A]
    assert (model.status, model.failures) == ("healthy", 0)
    cloud.fail("500", model="model-a", times=1)
    assert proxy.chat().status_code == 500
    assert round(lasts(proxy.health().models[MODEL_A])) == 1  # the backoff starts afresh


@pytest.mark.parametrize(("retry_after", "policy_s", "expected"), [(None, 3, [1, 2, 3]), ("3600", 60, [60, 60, 60])])
def test_a_rate_limited_key_backs_off_or_waits_as_told_within_caps(
        cloud: FakeProvider, store: StateStore, start_proxy: StartProxy,
        retry_after: str | None, policy_s: int, expected: list[int]) -> None:
    changes.set_key_policy(store, "openai-compatible", cooldown_s=policy_s)
    cloud.retry_after = retry_after
    proxy = start_proxy()
    cloud.fail("429")  # every key, every time
    cooldowns = []
    for _ in range(3):
        assert proxy.chat().status_code == 429
        cooldowns.append(round(lasts(proxy.health().keys["FAKE_API_KEY"])))
    assert cooldowns == expected  # no Retry-After: 1 s, 2 s, … capped by the policy; else Retry-After, capped


def test_cooldown_last_tries_the_cooled_backend(cloud: FakeProvider, store: StateStore,
                                                start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    cool_down_model_a(proxy, cloud)
    changes.set_model_policy(store, "sonnet", cooldown_last=True)  # applies to the next request
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == MODEL_A and answer.headers["x-broke-attempts"] == "1"
    assert text_of(answer) == "fake:model-a:key-one"


# ---- local workers ------------------------------------------------------------------------------------

def test_a_failing_replica_is_passed_over_for_its_twin(store: StateStore, workers: Workers,
                                                       start_proxy: StartProxy) -> None:
    changes.add_local_model(store, "tiny", "/models/tiny")
    changes.swap(store, [("sonnet", LOCAL)])
    failing, twin = workers(2)
    failing.fail("500")
    proxy = start_proxy(workers={LOCAL: [failing, twin]})
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == LOCAL and answer.headers["x-broke-attempts"] == "2"
    assert answer.headers["x-broke-via"] == "native"
    assert text_of(answer) == "fake:default_model:"  # mlx_lm.server's own model name, no key
    assert (len(failing.requests), len(twin.requests)) == (1, 1)
    health = proxy.health()
    replica = health.workers[f"tiny@{failing.port}"]
    assert (replica.status, replica.reason) == ("cooldown", "error")
    assert f"tiny@{twin.port}" not in health.workers and health.models == {}  # the pool is not marked down


def test_a_busy_local_model_goes_after_the_other_candidates(cloud: FakeProvider, store: StateStore,
                                                            workers: Workers, start_proxy: StartProxy) -> None:
    changes.add_local_model(store, "tiny", "/models/tiny", concurrency=1)
    changes.swap(store, [("sonnet", LOCAL)])
    changes.set_fallbacks(store, "sonnet", [MODEL_A])
    (worker,) = workers(1)
    proxy = start_proxy(workers={LOCAL: [worker]})
    assert proxy.chat().headers["x-broke-backend"] == LOCAL  # idle, the local model goes first
    worker.fail("hang", times=1)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(proxy.chat)  # takes the worker's one place until the worker hangs up
        deadline = time.monotonic() + 5
        while len(worker.requests) < 2:
            assert time.monotonic() < deadline, "the held request never reached the worker"
            time.sleep(0.005)
        answer = proxy.chat()
        worker.stop()  # the held request's worker hangs up: it falls over to the cloud too
        assert held.result(timeout=10).headers["x-broke-backend"] == MODEL_A
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == MODEL_A and answer.headers["x-broke-attempts"] == "1"
    assert text_of(answer) == "fake:model-a:key-one"
    assert [(e["backend"], e["reason"]) for e in proxy.events() if e["event"] == "overflow"] == [(LOCAL, "busy")]


# ---- transport ------------------------------------------------------------------------------------------

def test_the_same_api_goes_native_with_the_provider_key(cloud: FakeProvider, litellm: FakeLiteLLM,
                                                        start_proxy: StartProxy) -> None:
    answer = start_proxy().chat("claude-sonnet-4-5")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-via"] == "native" and answer.headers["x-broke-backend"] == MODEL_A
    assert answer.json()["model"] == "claude-sonnet-4-5"  # the name the client asked for
    (arrived,) = cloud.requests
    assert (arrived["path"], arrived["model"], arrived["key"]) == ("/v1/chat/completions", "model-a", "key-one")
    assert litellm.requests == []


def test_a_provider_broke_does_not_speak_goes_to_litellm_with_the_master_key(
        cloud: FakeProvider, litellm: FakeLiteLLM, gemini: str, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    message = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    answer = proxy.post("/v1/messages", message, headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-via"] == "litellm" and answer.headers["x-broke-backend"] == GEMINI
    deployment = f"{GEMINI}@FAKE_API_KEY"  # backend × key, as the LiteLLM config names it
    assert answer.json()["content"][0]["text"] == f"litellm:{deployment}"
    (forwarded,) = litellm.requests
    assert forwarded["path"] == "/v1/messages" and forwarded["body"]["model"] == deployment
    assert forwarded["authorization"] == f"Bearer {proxy.master_key}"  # never the client's token
    assert cloud.requests == []


# ---- admission --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["", "broke-not-a-token"])
def test_a_missing_or_wrong_client_token_is_401(cloud: FakeProvider, start_proxy: StartProxy, token: str) -> None:
    answer = start_proxy().chat(token=token)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "authentication_error"
    assert cloud.requests == []


def test_bad_tokens_from_rotating_loopback_addresses_are_limited_in_all(cloud: FakeProvider,
                                                                        start_proxy: StartProxy) -> None:
    """Every 127.x address is this machine: a new address per guess must not get a new allowance."""
    from starlette.testclient import TestClient
    proxy = start_proxy()
    codes = []
    for i in range(200):
        client = TestClient(proxy.http.app, client=(f"127.0.{i // 250}.{i % 250 + 1}", 40000))
        codes.append(client.post("/v1/chat/completions", json={"model": "sonnet"},
                                 headers={"authorization": f"Bearer wrong-{i}"}).status_code)
    assert codes.count(401) <= 50 and set(codes[50:]) == {429}
    assert proxy.chat().status_code == 200  # the real token still works


def test_too_many_or_too_large_request_headers_are_431(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    big = proxy.http.post("/v1/chat/completions", json={"model": "sonnet"},
                            headers={"authorization": f"Bearer {proxy.token}", "x-big": "a" * 8_000_000})
    assert big.status_code == 431 and big.json()["error"]["code"] == "request_header_fields_too_large"
    many = proxy.http.post("/v1/chat/completions", json={"model": "sonnet"},
                             headers={"authorization": f"Bearer {proxy.token}",
                                      **{f"x-h{i}": "v" for i in range(150)}})
    assert many.status_code == 431
    assert cloud.requests == []
    assert proxy.chat().status_code == 200


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_health_and_metrics_refuse_a_host_that_is_not_a_loopback_name(start_proxy: StartProxy, path: str) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 asks from loopback."""
    from starlette.testclient import TestClient
    proxy = start_proxy()
    local = TestClient(proxy.http.app, base_url="http://127.0.0.1:4000", client=("127.0.0.1", 40000))
    assert local.get(path, headers={"host": "evil.example:4000"}).status_code == 403
    assert local.get(path, headers={"host": "evil.example"}).status_code == 403
    if path == "/metrics":  # /health asks LiteLLM through the lifespan's session: not in this client
        assert local.get(path).status_code == 200
        assert local.get(path, headers={"host": "localhost:4000"}).status_code == 200


def test_an_unknown_model_is_400(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    answer = start_proxy().chat("gpt-4o")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_model"
    assert cloud.requests == []


# ---- the gateway and `explain` tell the same truth ---------------------------------------------
EASY = "what is 2+2"
HARD = ("Refactor this multi-file Python service so the worker pool, the cache invalidation and the "
        "retry queue cannot deadlock; prove the lock ordering is safe, then write the migration plan, "
        "step by step, for a zero-downtime rollout across three regions.")


@pytest.mark.timeout(300)  # the first use of the router in a home fits it
def test_the_gateway_and_explain_give_a_prompt_the_same_tier_backend_and_way(
        cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli: Any, cli_json: Any) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    proxy = start_proxy()
    tiers = set()
    for prompt in (EASY, HARD):
        answer = proxy.chat("auto", messages=[{"role": "user", "content": prompt}])
        assert answer.status_code == 200, answer.text
        code, explained = cli_json("explain", "auto", "--prompt", prompt)
        assert code == 0
        assert answer.headers["x-broke-tier"] == explained["tier"]
        assert answer.headers["x-broke-backend"] == explained["chosen"]["backend"]
        assert float(answer.headers["x-broke-complexity"]) >= 0
        shown = cli("explain", "auto", "--prompt", prompt)
        assert f"chosen via {answer.headers['x-broke-via']}" in shown.output
        tiers.add(explained["tier"])
    assert len(tiers) == 2  # the two prompts really are told apart


@pytest.mark.timeout(300)
def test_a_gemini_client_asking_for_auto_is_routed_by_its_prompt(
        cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli_json: Any) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    proxy = start_proxy()
    tiers = set()
    for prompt in (EASY, HARD):
        answer = proxy.http.post("/v1beta/models/auto:generateContent", headers={"x-goog-api-key": proxy.token},
                                 json={"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
        assert answer.status_code == 200, answer.text
        _, explained = cli_json("explain", "auto", "--prompt", prompt)
        assert answer.headers["x-broke-tier"] == explained["tier"]
        tiers.add(answer.headers["x-broke-tier"])
    assert len(tiers) == 2  # Google's contents are read as the prompt, not skipped


def test_explain_says_which_way_each_attempt_goes(cloud: FakeProvider, store: StateStore, cli: Any) -> None:
    changes.add_backend(store, GEMINI, provider="gemini", model="fake-gemini", api_base=None,
                        key_env="FAKE_API_KEY", pinned=False)
    changes.set_fallbacks(store, "sonnet", [GEMINI])
    shown = cli("explain", "sonnet")  # Claude Code's slot: Anthropic messages, translated by broke for chat servers
    assert shown.exit_code == 0, shown.output
    assert "chosen via translated" in shown.output and "attempt 3 via litellm" in shown.output
    shown = cli("explain", "custom")  # chat completions: native to an OpenAI-compatible backend
    assert "via native" in shown.output or "none" in shown.output


# ---- configuration errors are not temporary ----------------------------------------------------

def test_a_backend_whose_key_is_not_set_is_a_400_naming_the_variable(
        cloud: FakeProvider, store: StateStore, start_proxy: StartProxy) -> None:
    changes.add_backend(store, "fake/model-c", provider="openai-compatible", model="model-c",
                        api_base=cloud.base_url, key_env="UNSET_API_KEY", pinned=False)
    changes.swap(store, [("sonnet", "fake/model-c")])
    proxy = start_proxy()
    answer = proxy.chat()
    assert answer.status_code == 400  # clients do not retry it for minutes as if it were temporary
    message = answer.json()["error"]["message"]
    assert "UNSET_API_KEY" in message and "broke restart" in message and ".env" in message
    assert "retry-after" not in answer.headers
    assert cloud.requests == []


def test_a_native_backend_added_while_the_gateway_runs_answers_at_once(
        cloud: FakeProvider, store: StateStore, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    changes.add_backend(store, "fake/model-c", provider="openai-compatible", model="model-c",
                        api_base=cloud.base_url, key_env="FAKE_API_KEY", pinned=False)
    changes.swap(store, [("sonnet", "fake/model-c")])  # after start: not in the record's deployments
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert text_of(answer) == "fake:model-c:key-one" and answer.headers["x-broke-via"] == "native"


def test_a_backend_added_while_running_that_needs_litellm_says_restart(
        cloud: FakeProvider, store: StateStore, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    changes.add_backend(store, "gemini/model-c", provider="gemini", model="model-c",
                        api_base=None, key_env="FAKE_API_KEY", pinned=False)
    changes.swap(store, [("sonnet", "gemini/model-c")])
    answer = proxy.post("/v1/messages", {"model": "sonnet", "max_tokens": 16,
                                         "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "restart_needed"
    assert "broke restart" in answer.json()["error"]["message"]


# ---- broke's own LiteLLM failing is never blamed on a backend -------------------------------------

def test_litellm_gone_leaves_the_backends_healthy_and_native_traffic_flowing(
        cloud: FakeProvider, store: StateStore, start_proxy: StartProxy, litellm: FakeLiteLLM, gemini: str) -> None:
    changes.swap(store, [("haiku", MODEL_A)])
    proxy = start_proxy()
    body = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    assert proxy.post("/v1/messages", body).status_code == 200
    litellm.stop()  # nothing listens on LiteLLM's port any more
    answer = proxy.post("/v1/messages", body)
    assert answer.status_code == 503  # this harness has no record to restart LiteLLM from
    assert "LiteLLM" in answer.json()["error"]["message"]
    assert proxy.health().models == {} and proxy.health().keys == {}  # no backend blamed
    assert proxy.chat("haiku").status_code == 200  # native traffic to the cloud is untouched


# ---- a corrupt health.json: requests go on, the file is rewritten, the corrupt one kept aside ------------

CORRUPT = b'{"generation": 3, "keys": {"X": {"status": "nonsense"'


def test_a_corrupt_health_file_does_not_stop_a_failover(cloud: FakeProvider, store: StateStore,
                                                        start_proxy: StartProxy) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    proxy = start_proxy()
    cloud.fail("429", key="key-one")
    assert text_of(proxy.chat()) == "fake:model-a:key-two"  # key one cools down: health.json has it
    cloud.clear()
    assert text_of(proxy.chat()) == "fake:model-a:key-two"  # the proxy's view has the cooldown now
    path = proxy.home / "health.json"
    path.write_bytes(CORRUPT)
    cloud.fail("500", model="model-a")
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    assert text_of(answer) == "fake:model-b:key-two"  # key one still sits out: the last good view
    health = proxy.health()  # the file is clean again, built from what the proxy knew and the failure
    assert health.models[MODEL_A].status == "cooldown"
    assert health.keys["FAKE_API_KEY"].status == "cooldown"
    (aside,) = proxy.home.glob("health.json.corrupt-*")
    assert aside.read_bytes() == CORRUPT


def test_a_corrupt_health_file_at_start_serves_and_fails_over(cloud: FakeProvider, store: StateStore,
                                                              broke_home: Any, start_proxy: StartProxy) -> None:
    changes.set_fallbacks(store, "sonnet", [MODEL_B])
    (broke_home / "health.json").write_bytes(b"\x00\xff garbage")
    proxy = start_proxy()
    assert proxy.chat().status_code == 200
    cloud.fail("500", model="model-a")
    answer = proxy.chat()
    assert answer.status_code == 200 and text_of(answer) == "fake:model-b:key-one"
    assert proxy.health().models[MODEL_A].status == "cooldown"
    assert [p.read_bytes() for p in broke_home.glob("health.json.corrupt-*")] == [b"\x00\xff garbage"]


# ---- every answer names its request -----------------------------------------------------------------

def test_every_answer_carries_its_own_request_id(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    answered, refused = proxy.chat(), proxy.chat(model="no-such-slot")
    assert answered.status_code == 200 and refused.status_code == 400, (answered.text, refused.text)
    ids = {answered.headers["x-broke-request-id"], refused.headers["x-broke-request-id"]}
    assert len(ids) == 2 and all(i.startswith("req_") and len(i) == 24 for i in ids)
