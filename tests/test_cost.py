"""What requests cost and save (issue 25): usage by kind in each client API's shape, streamed or not, priced
at each kind's own rate; the ledger, also after a restart; `broke cost`; budgets under concurrency.

The in-process proxy of proxy_harness.py, with the fake cloud reporting prompt-cache tokens in each API's
own shape (fake_provider.py); an Anthropic and an OpenAI backend are the same fake at its root URL.
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from broke import changes
from broke.catalog import load_catalog
from broke.cost.budgets import REFRESH_S, Spending
from broke.cost.ledger import TABLE
from broke.cost.prices import Rates, rates_for
from broke.cost.usage import MESSAGES, RESPONSES, Usage, UsageMeter
from broke.records import records_path
from broke.state.model import Price
from broke.state.store import StateStore
from conftest import assert_one_error_line
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(60)

StartProxy = Callable[..., "Proxy"]
MODEL_A = "fake/model-a"
ANTHROPIC, OPENAI = "fakeant/claude", "fakeoai/gpt"
LOCAL = "mlx/tiny"
#: fake/model-a's own prices, USD per million tokens: input, output, cache read, cache write
PRICES = Price(2.0, 8.0, 0.5, 2.5)


def ledger(proxy: Proxy) -> list[dict[str, Any]]:
    """The ledger's rows, once the proxy's Appender has written what it holds."""
    assert proxy.front is not None and proxy.front.costs.ledger.flush()
    connection = sqlite3.connect(records_path(proxy.home))
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(f"SELECT * FROM {TABLE} ORDER BY rowid")]
    finally:
        connection.close()


def cost_of(usage: Usage, rates: Price) -> float:
    """A worked example's cost: each kind of token at its own price per million."""
    assert rates.input is not None and rates.output is not None
    assert rates.cache_read is not None and rates.cache_write is not None
    return (usage.input * rates.input + usage.output * rates.output + usage.cache_read * rates.cache_read
            + usage.cache_write * rates.cache_write) / 1_000_000


@pytest.fixture
def priced(cloud: FakeProvider, store: StateStore) -> FakeProvider:
    """The harness's cloud, fake/model-a with its own prices, answers reporting 1000 cache reads and 200 writes."""
    changes.set_prices(store, MODEL_A, PRICES)
    cloud.cache_read_tokens, cloud.cache_write_tokens = 1000, 200
    return cloud


# ---- each API's formula, worked examples ------------------------------------------------------------

def test_anthropic_input_tokens_leave_out_cache_reads_and_writes() -> None:
    body = (b'{"usage": {"input_tokens": 12, "cache_creation_input_tokens": 200, '
            b'"cache_read_input_tokens": 1000, "output_tokens": 30}}')
    assert UsageMeter(MESSAGES).whole(body) == Usage(input=12, output=30, cache_read=1000, cache_write=200)


def test_openai_prompt_tokens_include_the_cached_ones() -> None:
    body = (b'{"usage": {"prompt_tokens": 1212, "completion_tokens": 30, "total_tokens": 1242, '
            b'"prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0}}}')
    assert UsageMeter("/v1/chat/completions").whole(body) == Usage(input=212, output=30, cache_read=1000)


def test_responses_input_tokens_include_the_cached_ones() -> None:
    body = (b'{"usage": {"input_tokens": 1212, "input_tokens_details": {"cached_tokens": 1000}, '
            b'"output_tokens": 30, "total_tokens": 1242}}')
    assert UsageMeter(RESPONSES).whole(body) == Usage(input=212, output=30, cache_read=1000)


def test_a_stream_is_read_across_chunks_and_anthropic_totals_keep_their_largest_value() -> None:
    meter = UsageMeter(MESSAGES)
    events = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":12,'
              b'"cache_read_input_tokens":1000,"cache_creation_input_tokens":200,"output_tokens":1}}}\n\n'
              + b'event: content_block_delta\ndata: {"delta":{"text":"' + b"x" * 5000 + b'"}}\n\n'
              + b'event: message_delta\ndata: {"usage":{"output_tokens":30}}\n\nevent: message_stop\n\n')
    for start in range(0, len(events), 7):  # fields cut between chunks are still read
        meter.feed(events[start:start + 7])
    assert meter.usage == Usage(input=12, output=30, cache_read=1000, cache_write=200)


def test_the_worked_example_prices_each_kind_at_its_own_rate(store: StateStore) -> None:
    """Claude Sonnet 4.5 from LiteLLM's map: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million.
    12 fresh + 1000 read + 200 written in, 30 out: 36 + 450 + 300 + 750 micro-dollars = $0.001536, where
    pricing the cache as fresh input (LiteLLM's Claude Code report) would say $0.004086."""
    rates = rates_for("anthropic/claude-sonnet-4-5-20250929", store.load(), load_catalog())
    assert rates == Rates(3e-06, 1.5e-05, 3e-07, 3.75e-06)
    assert rates.cost(Usage(12, 30, 1000, 200)) == pytest.approx(0.001536)


def test_prices_come_from_litellms_file_without_importing_litellm() -> None:
    code = ("import sys, broke.cost.prices as p; assert p.price_map(); "
            "print('litellm' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_an_unknown_price_is_unpriced_and_a_local_worker_is_free(cloud: FakeProvider, store: StateStore) -> None:
    state = store.load()
    assert rates_for("fake/model-b", state, load_catalog()) is None  # not in LiteLLM's map, no price of its own
    assert rates_for("mlx/mlx-community/Qwen2.5-Coder-7B-Instruct-4bit", state, load_catalog()) == Rates(0, 0, 0, 0)
    assert rates_for("openrouter/qwen/qwen3-coder:free", state, load_catalog()) == Rates(0, 0, 0, 0)
    assert rates_for("openrouter/qwen/qwen3-coder", state, load_catalog()) is None


# ---- every client API, streamed or not --------------------------------------------------------------

def test_a_chat_answer_carries_its_cost_with_cached_tokens_at_their_own_rate(priced: FakeProvider,
                                                                            start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    answer = proxy.chat()
    assert answer.status_code == 200, answer.text
    usage = Usage(input=1, output=3, cache_read=1000, cache_write=200)  # "hi": one word; fake:model-a:key-one
    assert float(answer.headers["x-broke-cost-usd"]) == pytest.approx(cost_of(usage, PRICES), abs=1e-6)
    [row] = ledger(proxy)
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        1, 3, 1000, 200)
    assert row["cost_usd"] == pytest.approx(cost_of(usage, PRICES))
    assert row["request_id"] == answer.headers["x-broke-request-id"] and row["status"] == 200
    assert (row["client"], row["slot"], row["backend"]) == ("client", "sonnet", MODEL_A)
    assert row["key_ref"] == proxy.record.key_refs["FAKE_API_KEY"]


def test_a_stream_that_did_not_ask_for_usage_is_priced_and_the_usage_chunk_stripped(
        priced: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    answer = proxy.chat(stream=True)
    assert answer.status_code == 200 and "x-broke-cost-usd" not in answer.headers  # known at its end only
    assert '"usage"' not in answer.text and answer.text.rstrip().endswith("data: [DONE]")
    assert priced.requests[-1]["body"]["stream_options"] == {"include_usage": True}  # broke asked for it
    [row] = ledger(proxy)
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        1, 3, 1000, 200)
    assert row["cost_usd"] == pytest.approx(cost_of(Usage(1, 3, 1000, 200), PRICES))


def test_a_stream_that_asked_for_usage_keeps_it(priced: FakeProvider, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    answer = proxy.chat(stream=True, stream_options={"include_usage": True})
    assert '"usage"' in answer.text and '"cached_tokens": 1000' in answer.text
    assert ledger(proxy)[0]["cache_read_tokens"] == 1000


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_are_priced_by_anthropics_formula(priced: FakeProvider, store: StateStore,
                                                              start_proxy: StartProxy, stream: bool) -> None:
    changes.add_backend(store, ANTHROPIC, provider="anthropic", model="claude-x", api_base=priced.root_url,
                        key_env="FAKE_API_KEY", pinned=True, price=PRICES)
    changes.swap(store, [("sonnet", ANTHROPIC)])
    proxy = start_proxy()
    body = {"model": "sonnet", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": "three words here"}]}
    answer = proxy.post("/v1/messages", body)
    assert answer.status_code == 200, answer.text
    [row] = ledger(proxy)
    usage = Usage(input=3, output=row["output_tokens"], cache_read=1000, cache_write=200)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (3, 1000, 200)
    assert row["output_tokens"] >= 1 and row["cost_usd"] == pytest.approx(cost_of(usage, PRICES))
    if not stream:
        assert float(answer.headers["x-broke-cost-usd"]) == pytest.approx(cost_of(usage, PRICES), abs=1e-6)
        counted = proxy.post("/v1/messages/count_tokens", {k: body[k] for k in ("model", "messages")})
        assert counted.status_code == 200 and counted.headers["x-broke-cost-usd"] == "0.000000"
        assert len(ledger(proxy)) == 1  # counting tokens costs nothing: no row


@pytest.mark.parametrize("stream", [False, True])
def test_responses_are_priced_with_cached_input_at_its_rate(priced: FakeProvider, store: StateStore,
                                                            start_proxy: StartProxy, stream: bool) -> None:
    changes.add_backend(store, OPENAI, provider="openai", model="gpt-x", api_base=priced.root_url + "/v1",
                        key_env="FAKE_API_KEY", pinned=True, price=PRICES)
    changes.swap(store, [("gpt-5-codex", OPENAI)])
    proxy = start_proxy()
    answer = proxy.post("/v1/responses", {"model": "gpt-5-codex", "input": "two words", "stream": stream})
    assert answer.status_code == 200, answer.text
    [row] = ledger(proxy)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (2, 1000, 0)
    assert row["cost_usd"] == pytest.approx(cost_of(Usage(2, row["output_tokens"], 1000, 0), PRICES))


def test_an_unpriced_backend_says_so_and_is_not_counted_as_free(cloud: FakeProvider, start_proxy: StartProxy,
                                                               cli: Any) -> None:
    proxy = start_proxy()
    answer = proxy.chat()
    assert answer.headers["x-broke-cost-usd"] == "unpriced"
    assert ledger(proxy)[0]["cost_usd"] is None
    report = json.loads(cli("cost", "--json").stdout)
    assert (report["requests"], report["unpriced"], report["total_usd"]) == (1, 1, 0)
    assert "broke_unpriced_total" in proxy.metrics()


def test_a_refusal_costs_nothing(cloud: FakeProvider, start_proxy: StartProxy) -> None:
    answer = start_proxy().chat(model="no-such-model")
    assert answer.status_code == 400 and answer.headers["x-broke-cost-usd"] == "0.000000"


# ---- savings, the ledger, `broke cost` --------------------------------------------------------------

def test_a_cheaper_answer_shows_what_it_saved_against_its_reference(cloud: FakeProvider, store: StateStore,
                                                                     start_proxy: StartProxy, cli: Any) -> None:
    changes.set_prices(store, MODEL_A, PRICES)
    changes.set_prices(store, "fake/model-b", Price(0.0, 0.0))  # free, as a local worker is
    changes.swap(store, [("haiku", MODEL_A), ("sonnet", "fake/model-b")])
    result = cli("cost", "reference", "sonnet", MODEL_A)
    assert result.exit_code == 0, result.output
    cloud.cache_read_tokens = 1000
    proxy = start_proxy()
    assert proxy.chat(model="haiku").status_code == 200  # haiku's reference: Claude Haiku of the cloud-direct team
    assert proxy.chat(model="sonnet").headers["x-broke-cost-usd"] == "0.000000"
    haiku, sonnet = ledger(proxy)
    used = Usage(1, 3, 1000, 0)
    assert haiku["reference_backend"] == "anthropic/claude-haiku-4-5-20251001"
    assert haiku["reference_usd"] == pytest.approx(1e-6 + 3 * 5e-6 + 1000 * 1e-7)  # $1 in, $5 out, $0.10 read
    assert haiku["cost_usd"] == pytest.approx(cost_of(used, PRICES))
    assert (sonnet["reference_backend"], sonnet["cost_usd"]) == (MODEL_A, 0)
    assert sonnet["reference_usd"] == pytest.approx(cost_of(used, PRICES))
    report = json.loads(cli("cost", "--by", "slot", "--json").stdout)
    saved = haiku["reference_usd"] - haiku["cost_usd"] + sonnet["reference_usd"]
    assert report["saved_usd"] == pytest.approx(saved, abs=1e-6) and report["requests"] == 2
    assert [r["slot"] for r in report["rows"]] == ["haiku", "sonnet"]


def test_a_local_stream_costs_nothing_and_saves_its_references_price(cloud: FakeProvider, store: StateStore,
                                                                      start_proxy: StartProxy, workers: Any) -> None:
    changes.add_backend(store, LOCAL, provider="mlx", model="tiny", api_base=None, key_env=None, pinned=False)
    changes.swap(store, [("haiku", LOCAL)])
    [worker] = workers(1)
    proxy = start_proxy(workers={LOCAL: [worker]})
    answer = proxy.chat(model="haiku", stream=True)
    assert answer.status_code == 200 and '"usage"' not in answer.text
    assert worker.requests[-1]["body"]["stream_options"] == {"include_usage": True}  # its usage shows the savings
    [row] = ledger(proxy)
    assert (row["backend"], row["cost_usd"], row["input_tokens"]) == (LOCAL, 0, 1)
    assert row["reference_backend"] == "anthropic/claude-haiku-4-5-20251001"
    assert row["reference_usd"] == pytest.approx((1 * 1 + row["output_tokens"] * 5) / 1_000_000)


def test_the_ledger_survives_a_restart_and_broke_cost_groups_it(priced: FakeProvider, start_proxy: StartProxy,
                                                                cli: Any, tmp_path: Path) -> None:
    first = start_proxy()
    assert first.chat().status_code == 200
    ledger(first)
    first.http.__exit__(None, None, None)  # the gateway stops
    second = start_proxy()
    assert second.chat(stream=True).status_code == 200
    assert len(ledger(second)) == 2
    report = json.loads(cli("cost", "--by", "backend", "--json").stdout)
    one = cost_of(Usage(1, 3, 1000, 200), PRICES)
    assert report["requests"] == 2 and report["total_usd"] == pytest.approx(2 * one, abs=1e-6)
    assert report["rows"] == [{"backend": MODEL_A, "requests": 2, "total_usd": pytest.approx(2 * one, abs=1e-6),
                               "saved_usd": report["rows"][0]["saved_usd"], "unpriced": 0, "tokens": 2 * 1204}]
    by_day = json.loads(cli("cost", "--by", "day", "--since", "2020-01-01", "--json").stdout)
    assert len(by_day["rows"]) == 1 and by_day["rows"][0]["requests"] == 2
    assert json.loads(cli("cost", "--since", "2999-01-01", "--json").stdout)["requests"] == 0
    text = cli("cost", "--by", "profile").stdout
    assert "2 requests" in text and "client" in text
    assert "broke_cost_usd_total" in second.metrics()


# ---- budgets -------------------------------------------------------------------------------------

def profile_token(home: Path, name: str) -> str:
    from broke.control.runfiles import TokenStore

    return TokenStore(home).token_for(f"profile:{name}")


def test_on_the_first_day_of_a_month_an_answer_counts_once_for_the_day_and_once_for_the_month(
        tmp_path: Path) -> None:
    first = 1796083200.0 + 3600  # 2026-12-01 01:00 UTC: the day and the month start together
    spending = Spending(tmp_path, "this-gateway")
    spending.add("client", "profile:team", 0.25, first)
    try:
        assert spending.spent("client", "profile:team", "day", first)[0] == 0.25
        assert spending.spent("client", "profile:team", "month", first)[0] == 0.25
    finally:
        spending.close()


def test_a_profile_budget_holds_under_20_concurrent_clients(priced: FakeProvider, store: StateStore,
                                                            start_proxy: StartProxy, cli: Any) -> None:
    one = cost_of(Usage(1, 3, 1000, 200), PRICES)
    result = cli("profile", "new", "team-a", "--budget-usd", str(10.5 * one), "--budget-period", "day")
    assert result.exit_code == 0, result.output
    proxy = start_proxy()
    token = profile_token(proxy.home, "team-a")
    first = [proxy.chat(token=token) for _ in range(10)]  # one at a time: the 10th is admitted at 86%
    assert [a.status_code for a in first] == [200] * 10
    assert ["x-broke-budget-warning" in a.headers for a in first] == [False] * 9 + [True]  # past 80%
    assert "budget" in first[-1].headers["x-broke-budget-warning"]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: proxy.chat(token=token), range(40)))
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == 40 and refused
    assert 1 <= len(ok) <= 1 + 19  # past the budget only what was already in flight when it was crossed
    message = refused[0].json()["error"]["message"]
    assert "budget" in message and "resets at" in message
    assert 0 < int(refused[0].headers["retry-after"]) <= 86400  # a daily budget resets at the next UTC midnight
    spent = sum(r["cost_usd"] for r in ledger(proxy))
    assert spent == pytest.approx((10 + len(ok)) * one)
    report = json.loads(cli("profile", "budget", "team-a", "--json").stdout)
    assert report["spent_usd"] == pytest.approx(spent, abs=1e-6) and report["left_usd"] == 0


def test_past_its_budget_a_fallback_profile_goes_to_a_free_local_worker(
        priced: FakeProvider, store: StateStore, start_proxy: StartProxy, workers: Any, cli: Any) -> None:
    changes.add_backend(store, LOCAL, provider="mlx", model="tiny", api_base=None, key_env=None, pinned=False)
    changes.set_fallbacks(store, "sonnet", [LOCAL])
    assert cli("profile", "new", "thrifty", "--budget-usd", "0.000001", "--on-budget", "fallback").exit_code == 0
    [worker] = workers(1)
    proxy = start_proxy(workers={LOCAL: [worker]})
    token = profile_token(proxy.home, "thrifty")
    assert proxy.chat(token=token).headers["x-broke-backend"] == MODEL_A  # spends past the tiny budget
    after = proxy.chat(token=token)
    assert after.status_code == 200 and after.headers["x-broke-backend"] == LOCAL
    assert "budget" in after.headers["x-broke-budget-warning"]
    assert after.headers["x-broke-cost-usd"] == "0.000000"


def test_a_key_past_its_budget_sits_out_for_the_next_key(priced: FakeProvider, store: StateStore,
                                                         start_proxy: StartProxy, cli: Any) -> None:
    result = cli("key-policy", "openai-compatible", "--budget-usd", "0.000001", "--budget-period", "month")
    assert result.exit_code == 0, result.output
    proxy = start_proxy()
    assert proxy.chat().json()["choices"][0]["message"]["content"] == "fake:model-a:key-one"
    assert proxy.chat().json()["choices"][0]["message"]["content"] == "fake:model-a:key-two"
    third = proxy.chat()
    assert third.status_code == 429 and "budget" in third.json()["error"]["message"]
    doctor = json.loads(cli("doctor", "--static", "--json").stdout)
    keys = {b["owner"]: b for b in doctor["budgets"]}
    assert set(keys) == {"key FAKE_API_KEY", "key FAKE_API_KEY_2"}
    assert all(b["left_usd"] == 0 and b["period"] == "month" for b in keys.values())
    explain = cli("explain", "sonnet")
    assert "key FAKE_API_KEY has spent its budget" in explain.stdout


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "fragment"), [
    (("backend", "price", MODEL_A, "--price-in", "-1"), 1, "--price-in"),
    (("backend", "price", MODEL_A, "--price-cache-write", "nan"), 1, "--price-cache-write"),
    (("backend", "price", MODEL_A), 0, ""),
    (("backend", "price", "no/such", "--price-in", "1"), 1, "no/such"),
    (("profile", "budget", "nobody", "--budget-usd", "5"), 1, "nobody"),
    (("profile", "new", "p", "--budget-usd", "-5"), 1, "--budget-usd"),
    (("profile", "new", "p", "--budget-usd", "5", "--budget-period", "week"), 1, "--budget-period"),
    (("key-policy", "openai", "--budget-usd", "1", "--budget-period", "year"), 1, "--budget-period"),
    (("key-policy", "nosuch", "--budget-usd", "1"), 1, "nosuch"),
    (("key-policy", "openai", "--budget-usd", "-1"), 1, "--budget-usd"),
    (("backend", "add", "x/y", "--provider", "openai-compatible", "--model", "y", "--api-base", "http://h/v1",
      "--price-out", "-2"), 1, "--price-out"),
    (("cost", "--by", "model"), 1, "--by"),
    (("cost", "--since", "yesterday"), 1, "--since"),
    (("cost", "reference", "sonnet", "no/such"), 1, "no/such"),
])
def test_bad_cost_input_is_one_line_and_changes_nothing(cloud: FakeProvider, store: StateStore, cli: Any,
                                                        args: tuple[str, ...], code: int, fragment: str) -> None:
    before = (store.path.read_bytes(), sorted(p.name for p in (store.home / "profiles").glob("*"))
              if (store.home / "profiles").is_dir() else [])
    result = cli(*args)
    if code == 0:
        assert result.exit_code == 0 and "unpriced" in result.stdout
        return
    assert_one_error_line(result, fragment, code=code)
    after = (store.path.read_bytes(), sorted(p.name for p in (store.home / "profiles").glob("*"))
             if (store.home / "profiles").is_dir() else [])
    assert after == before


def test_a_corrupt_ledger_is_reported_never_replaced(broke_home: Path, cli: Any) -> None:
    broke_home.mkdir(parents=True)
    records_path(broke_home).write_bytes(b"not a database" * 100)
    assert_one_error_line(cli("cost"), "records.sqlite", code=1)
    assert records_path(broke_home).read_bytes() == b"not a database" * 100


def test_a_corrupt_ledger_never_takes_requests_down(priced: FakeProvider, start_proxy: StartProxy,
                                                    cli: Any) -> None:
    assert cli("profile", "new", "team-c", "--budget-usd", "5").exit_code == 0
    proxy = start_proxy()
    records_path(proxy.home).unlink(missing_ok=True)
    records_path(proxy.home).write_bytes(b"not a database" * 100)
    answer = proxy.chat(token=profile_token(proxy.home, "team-c"))
    assert answer.status_code == 200 and float(answer.headers["x-broke-cost-usd"]) > 0
    assert records_path(proxy.home).read_bytes() == b"not a database" * 100


def test_an_unknown_price_flag_is_a_usage_error(cloud: FakeProvider, cli: Any) -> None:
    result = cli("backend", "price", MODEL_A, "--price-input", "1")
    assert result.exit_code == 2 and "--price-input" in result.output


def test_two_gateways_on_one_home_share_a_budget(priced: FakeProvider, start_proxy: StartProxy, cli: Any) -> None:
    one = cost_of(Usage(1, 3, 1000, 200), PRICES)
    assert cli("profile", "new", "shared", "--budget-usd", str(1.5 * one)).exit_code == 0
    first, second = start_proxy(), start_proxy()
    token = profile_token(first.home, "shared")
    assert first.chat(token=token).status_code == 200
    ledger(first)  # written: the other gateway reads it (at most REFRESH_S late)
    time.sleep(REFRESH_S)
    assert second.chat(token=token).status_code == 200  # 1 of 1.5 spent: admitted
    ledger(second)
    time.sleep(REFRESH_S)
    for proxy in (first, second):
        refused = proxy.chat(token=token)
        assert refused.status_code == 429 and "budget" in refused.json()["error"]["message"]


def test_the_dashboard_shows_spend_savings_and_budgets(priced: FakeProvider, start_proxy: StartProxy,
                                                       cli: Any) -> None:
    from starlette.testclient import TestClient

    assert cli("profile", "new", "team-b", "--budget-usd", "5", "--budget-period", "day").exit_code == 0
    proxy = start_proxy()
    assert proxy.chat().status_code == 200
    ledger(proxy)
    local = TestClient(proxy.http.app, base_url="http://127.0.0.1:4000", client=("127.0.0.1", 40000))
    view = local.get("/ui/api/cost", headers={"authorization": f"Bearer {proxy.token}"}).json()
    assert view["requests"] == 1 and view["total_usd"] == pytest.approx(cost_of(Usage(1, 3, 1000, 200), PRICES))
    assert view["rows"][0]["slot"] == "sonnet" and len(view["days"]) == 1
    assert view["budgets"] == [{"owner": "profile 'team-b'", "budget_usd": 5.0, "period": "day", "spent_usd": 0,
                                "left_usd": 5.0, "resets_at": view["budgets"][0]["resets_at"]}]
    recent = local.get("/ui/api/traffic", headers={"authorization": f"Bearer {proxy.token}"}).json()["recent"]
    assert recent[-1]["cost_usd"] == pytest.approx(view["total_usd"]) and recent[-1]["cache_read_tokens"] == 1000


def test_broke_cost_plots_spend_and_savings_per_day(priced: FakeProvider, start_proxy: StartProxy, cli: Any,
                                                    tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    proxy = start_proxy()
    assert proxy.chat().status_code == 200
    ledger(proxy)
    result = cli("cost", "--plot", str(tmp_path / "cost.png"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
    assert_one_error_line(cli("cost", "--plot", str(tmp_path / "cost.txt")), "--plot", code=1)


def test_model_policy_cheapest_orders_candidates_by_expected_cost(cloud: FakeProvider, store: StateStore,
                                                                  start_proxy: StartProxy, cli: Any) -> None:
    changes.add_backend(store, "fake/model-c", provider="openai-compatible", model="model-c",
                        api_base=cloud.base_url, key_env="FAKE_API_KEY", pinned=False, price=Price(1.0, 1.0))
    changes.set_prices(store, "fake/model-b", Price(10.0, 10.0))  # model-a stays unpriced: tried last
    changes.set_fallbacks(store, "sonnet", ["fake/model-b", "fake/model-c"])
    result = cli("model-policy", "sonnet", "--mode", "cheapest")
    assert result.exit_code == 0, result.output
    explained = json.loads(cli("explain", "sonnet", "--json").stdout)
    order = list(dict.fromkeys(c["backend"] for c in explained["candidates"]))
    assert order == ["fake/model-c", "fake/model-b", MODEL_A]
    answer = start_proxy().chat()
    assert answer.headers["x-broke-backend"] == "fake/model-c"
    assert float(answer.headers["x-broke-cost-usd"]) == pytest.approx((1 + 3) / 1_000_000)


@pytest.mark.parametrize("stream", [False, True])
def test_a_translated_answer_is_priced_from_the_usage_the_client_sees(priced: FakeProvider, start_proxy: StartProxy,
                                                                     stream: bool) -> None:
    """Claude Code's /v1/messages on a chat backend: broke translates, and the usage it hands the client in
    Anthropic's shape (cache reads apart from input) is what the ledger prices."""
    proxy = start_proxy()
    answer = proxy.post("/v1/messages", {"model": "sonnet", "max_tokens": 32, "stream": stream,
                                         "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-via"] == "translated"
    [row] = ledger(proxy)
    assert (row["output_tokens"], row["cache_read_tokens"]) == (3, 1000)
    assert row["cost_usd"] == pytest.approx(cost_of(Usage(row["input_tokens"], 3, 1000, row["cache_write_tokens"]),
                                                    PRICES), abs=1e-6)
    assert row["cost_usd"] > 0
