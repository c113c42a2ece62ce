"""Outcome records beyond `auto`: other slots once the user turns them on (`broke router record --slot|--all|
--auto-only`), their vector estimated by the same router, feedback stored but not learned; the prompt's text
only with `--prompt-text on` (checked in the bytes of records.sqlite), shown by `outcomes --json|--export`,
deleted by `outcomes --forget`, and quoted by `explain auto --prompt` for a labelled neighbour."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from broke import changes
from broke.records import records_path
from broke.router import model
from broke.router.embed import load_vectors
from broke.state.store import StateStore
from conftest import assert_one_error_line
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(120)

StartProxy = Callable[..., "Proxy"]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"


@pytest.fixture(autouse=True)
def fresh_router() -> Iterator[None]:
    """Each test loads the home's router itself (the shipped prior: a fresh home trains nothing)."""
    model.forget_loaded()
    yield
    model.forget_loaded()


def ask(proxy: Proxy, slot: str, prompt: str) -> Any:
    answer = proxy.chat(slot, messages=[{"role": "user", "content": prompt}])
    assert answer.status_code == 200, answer.text
    assert proxy.front is not None
    proxy.front.routed.flush()
    return answer


def stored_bytes(home: Path) -> bytes:
    """Every byte the records database holds on disk (the file and its write-ahead log)."""
    path = records_path(home)
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def vector_bytes(home: Path, request_id: str) -> int:
    with sqlite3.connect(records_path(home)) as connection:
        (vector,) = connection.execute("SELECT vector FROM router_outcomes WHERE request_id = ?",
                                       (request_id,)).fetchone()
    return len(vector or b"")


def test_another_slot_is_recorded_once_turned_on_and_its_feedback_is_kept_not_learned(
        cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli, cli_json, broke_home: Path) -> None:
    changes.swap(store, [("opus", MODEL_B)])
    proxy = start_proxy()
    ask(proxy, "sonnet", "Summarise the plot of Hamlet in two sentences")
    assert cli_json("router", "outcomes", "--json") == (0, [])  # not recorded by default
    assert proxy.front is not None and proxy.front.router_model._router is None  # nor estimated: no router loaded

    said = cli("router", "record", "--slot", "sonnet")
    assert said.exit_code == 0 and "`auto` and slot sonnet" in said.output, said.output
    answer = ask(proxy, "sonnet", "Summarise the plot of Macbeth in two sentences")
    request_id = answer.headers["x-broke-request-id"]
    ask(proxy, "opus", "not recorded: another slot")
    code, records = cli_json("router", "outcomes", "--json")
    assert code == 0 and [r["request_id"] for r in records] == [request_id]
    record = records[0]
    assert record["slot"] == "sonnet" and record["tier"] == "" and record["backend"] == MODEL_A
    assert record["backend"] == answer.headers["x-broke-backend"]
    assert record["status"] == 200 and record["tokens"] and record["tokens"] > 0 and record["latency_ms"] > 0
    assert 0.0 <= record["p_strong"] <= 1.0 and "prompt" not in record
    assert vector_bytes(broke_home, request_id) == 4 * load_vectors().vectors.shape[1]

    said = cli("feedback", request_id, "bad")
    assert said.exit_code == 0 and "recorded" in said.output and "does not learn" in said.output
    assert "sonnet" in said.output
    over_http = proxy.post("/v1/broke/feedback", {"request_id": request_id, "verdict": "good"})
    assert over_http.status_code == 200 and over_http.json()["learned"] is False
    assert "not routed by tier" in over_http.json()["why_not"]
    assert cli_json("router", "outcomes", "--json")[1][0]["feedback"] == "good"
    assert "learned from no labels" in cli("router", "show").output

    assert cli("router", "record", "--auto-only").exit_code == 0
    ask(proxy, "sonnet", "not recorded any more")
    assert len(cli_json("router", "outcomes", "--json")[1]) == 1
    assert cli("router", "record", "--all").exit_code == 0
    ask(proxy, "opus", "every slot now")
    assert [r["slot"] for r in cli_json("router", "outcomes", "--json")[1]] == ["opus", "sonnet"]


def test_prompt_text_is_kept_only_when_turned_on_and_forget_deletes_it(
        cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli, cli_json, broke_home: Path,
        tmp_path: Path) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    assert cli("router", "record", "--slot", "sonnet").exit_code == 0
    proxy = start_proxy()
    ask(proxy, "auto", "Explain quicksort; marker zq-off-auto-5521")
    ask(proxy, "sonnet", "Explain heapsort; marker zq-off-sonnet-5521")
    stored = stored_bytes(broke_home)
    assert len(cli_json("router", "outcomes", "--json")[1]) == 2
    assert b"zq-off" not in stored and b"5521" not in stored

    said = cli("router", "record", "--prompt-text", "on")
    assert said.exit_code == 0 and "prompt text kept" in said.output
    auto_text, sonnet_text = "Explain mergesort; marker zq-on-auto-7734", "Explain radix sort; marker zq-on-sonnet-7734"
    long_text = "zq-long-7734 " + "x" * 9000
    ids = [ask(proxy, slot, text).headers["x-broke-request-id"]
           for slot, text in (("auto", auto_text), ("sonnet", sonnet_text), ("sonnet", long_text))]
    assert b"zq-on-auto-7734" in stored_bytes(broke_home) and b"zq-on-sonnet-7734" in stored_bytes(broke_home)
    by_id = {r["request_id"]: r for r in cli_json("router", "outcomes", "--json")[1]}
    assert by_id[ids[0]]["prompt"] == auto_text and by_id[ids[1]]["prompt"] == sonnet_text
    assert by_id[ids[0]]["prompt_cut"] is False
    assert by_id[ids[2]]["prompt_cut"] is True and by_id[ids[2]]["prompt"] == long_text[:8000]
    exported = tmp_path / "out.jsonl"
    assert cli("router", "outcomes", "--export", str(exported)).exit_code == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [r.get("prompt") for r in lines][-3:-1] == [auto_text, sonnet_text] and "prompt" not in lines[0]
    assert "3 with their prompt text" in cli("router", "outcomes").output

    said = cli("router", "record", "--prompt-text", "off")
    assert said.exit_code == 0 and "prompt text not kept" in said.output
    assert "3 records keep the prompt text" in said.output and "broke router outcomes --forget" in said.output
    ask(proxy, "sonnet", "Explain bubble sort; marker zq-after-9911")
    assert b"zq-after-9911" not in stored_bytes(broke_home)
    assert b"zq-on-sonnet-7734" in stored_bytes(broke_home)  # turning it off deletes nothing

    assert "forgot 6 outcome records" in cli("router", "outcomes", "--forget").output
    assert cli_json("router", "outcomes", "--json")[1] == []
    left = stored_bytes(broke_home)
    assert b"7734" not in left and b"zq-long" not in left


def test_explain_quotes_a_labelled_neighbour_whose_text_was_kept(
        cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    changes.set_thresholds(store, balanced_from=0.99, premium_from=0.99)  # all to basic, whose feedback teaches
    assert cli("router", "record", "--prompt-text", "on").exit_code == 0
    proxy = start_proxy()
    prompt = "Write a SQL query joining orders and customers to find the top 5 customers by revenue"
    request_id = ask(proxy, "auto", prompt).headers["x-broke-request-id"]
    assert "learned from it" in cli("feedback", request_id, "bad").output
    shown = cli("explain", "auto", "--prompt", prompt.replace("5", "9"))
    assert shown.exit_code == 0, shown.output
    assert f'{request_id} "Write a SQL query joining orders' in " ".join(shown.output.split())


def test_record_settings_show_in_router_show_and_bad_input_changes_nothing(store: StateStore, cli,
                                                                             cli_json) -> None:
    code, shown = cli_json("router", "show")
    assert code == 0 and shown["record"] == {"slots": [], "prompt_text": False}
    assert "outcome records: `auto` only; prompt text not kept" in cli("router", "show").output
    assert cli("router", "record", "--slot", "sonnet", "--slot", "opus", "--slot", "sonnet", "--slot", "auto",
               "--prompt-text", "on").exit_code == 0
    assert cli_json("router", "show")[1]["record"] == {"slots": ["sonnet", "opus"], "prompt_text": True}
    assert "`auto` and slots sonnet, opus; prompt text kept" in cli("router", "show").output

    before = store.path.read_bytes()
    assert_one_error_line(cli("router", "record", "--slot", "nope"), "unknown slot 'nope'")
    assert_one_error_line(cli("router", "record", "--slot", "*", "--slot", "sonnet"), "goes alone")
    assert_one_error_line(cli("router", "record", "--slot", "sonnet", "--all"), "--slot and --all", code=2)
    assert_one_error_line(cli("router", "record", "--prompt-text", "maybe"), "on or off", code=2)
    assert_one_error_line(cli("router", "record"), "--prompt-text on|off", code=2)
    assert store.path.read_bytes() == before
    assert cli("router", "record", "--all").exit_code == 0
    assert "`auto` and every other slot" in cli("router", "show").output


def test_a_state_file_without_the_record_table_reads_as_auto_only(store: StateStore, cli, cli_json) -> None:
    assert cli("router", "record", "--slot", "sonnet", "--prompt-text", "on").exit_code == 0
    text = store.path.read_text()
    start = text.index("[router.record]")
    end = text.index("\n[", start + 1)
    store.path.write_text(text[:start] + text[end + 1:])  # as a broke without `router record` wrote it
    assert cli_json("router", "show")[1]["record"] == {"slots": [], "prompt_text": False}
