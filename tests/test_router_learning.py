"""`auto` learns from the user's labels: outcome sets (`router learn`), feedback on routed requests (CLI and
the gateway's endpoint), the blend with the shipped prior, `router show|forget|outcomes`, `explain`."""
from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from broke import changes
from broke.router import artifact, learned, model
from broke.router.data import DATA_FILE, data_version
from broke.router.labels import parse_outcomes
from broke.state.store import StateStore
from conftest import assert_one_error_line
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import Proxy

pytest_plugins = ("proxy_harness", "router_prior")
pytestmark = pytest.mark.timeout(120)

StartProxy = Callable[..., "Proxy"]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"
#: Prompts of one kind (say, the user's SQL work) where only the strong model did well, and of another
#: kind (greetings and small talk) where the weak one did as well.
SQL = [f"Write a SQL query joining orders and customers to find the top {n} customers by revenue in {y}"
       for n, y in zip(range(3, 23), range(2001, 2021), strict=True)]
CHAT = [f"Say hello to my friend number {n} and wish them a nice {d}" for n, d in
        zip(range(20), ["day", "week", "weekend", "evening", "morning"] * 4, strict=True)]
PROBE = "Write a SQL query joining orders and customers to find the top 7 customers by revenue in 2023"


def outcome_file(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def teach(tmp_path: Path) -> Path:
    return outcome_file(tmp_path / "team.jsonl", [{"prompt": p, "weak": 0.0, "strong": 1.0} for p in SQL]
                        + [{"prompt": p, "winner": "weak"} for p in CHAT])


def p_strong(cli_json: Any, prompt: str) -> float:
    code, result = cli_json("estimate", prompt)
    assert code == 0
    return float(result["p_strong"])


def test_learning_moves_p_strong_towards_the_labels_and_forget_returns_to_the_prior(
        home: Path, cli, cli_json, tmp_path: Path) -> None:
    before = p_strong(cli_json, PROBE)
    chat_before = p_strong(cli_json, "Say hello to my friend number 42 and wish them a nice day")
    result = cli("router", "learn", str(teach(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "learned 40 labelled prompts" in result.output
    after = p_strong(cli_json, PROBE)
    assert after > before + 0.2  # among prompts only the strong model did well
    assert p_strong(cli_json, "Say hello to my friend number 42 and wish them a nice day") < chat_before
    model.forget_loaded()  # a new process: the same labels give the same p_strong
    assert p_strong(cli_json, PROBE) == after
    shown = cli("router", "show")
    assert "learned from 40 labels (40 from learn)" in shown.output
    code, as_json = cli_json("router", "show", "--json")
    assert as_json["learned"]["labels"] == 40 and 0 < as_json["learned"]["mean_weight"] <= 1
    explained = cli("explain", "auto", "--prompt", PROBE)
    assert explained.exit_code == 0, explained.output
    assert f"nearest labels: {tmp_path / 'team.jsonl'}:" in explained.output
    forgot = cli("router", "forget")
    assert forgot.exit_code == 0 and "forgot 40 labels" in forgot.output
    assert p_strong(cli_json, PROBE) == pytest.approx(before)
    assert "learned from no labels" in cli("router", "show").output


def test_the_same_labels_fit_the_same_router_and_relearning_replaces(home: Path, tmp_path: Path,
                                                                     prior: model.Router) -> None:
    outcomes = parse_outcomes(teach(tmp_path).read_text().splitlines(), "team")
    first = learned.learn(home, outcomes, prior=prior)
    again = learned.learn(home, outcomes, prior=prior)  # the same prompts: replaced, not doubled
    assert len(again.local) == len(first.local) == 40
    other = learned.learn(tmp_path / "other", outcomes, prior=prior)
    probes = [PROBE, "hello there", "prove Fermat's little theorem"]
    assert [e.p_strong for e in first.estimate_many(probes)] == [e.p_strong for e in other.estimate_many(probes)]
    assert [other.estimate(p).p_strong for p in probes] == pytest.approx([e.p_strong for e in
                                                                          other.estimate_many(probes)])
    records = home / "records.sqlite"
    assert stat.S_IMODE(os.stat(records).st_mode) == 0o600


@pytest.mark.parametrize("line, fragment", [
    ("not json", "line 2: not JSON"),
    ({"prompt": "x", "weak": 2, "strong": 0}, "line 2: needs \"weak\" and \"strong\" scores in 0..1"),
    ({"prompt": "x", "winner": "both"}, "line 2: \"winner\" must be weak, strong or tie"),
    ({"weak": 0, "strong": 1}, "line 2: needs a non-empty string \"prompt\""),
])
def test_a_bad_line_is_named_and_nothing_is_learned(home: Path, cli, tmp_path: Path, line: Any,
                                                    fragment: str) -> None:
    bad = outcome_file(tmp_path / "bad.jsonl", [{"prompt": SQL[0], "winner": "strong"}, line, {"prompt": SQL[1],
                                                                                                  "winner": "weak"}])
    assert_one_error_line(cli("router", "learn", str(bad)), fragment.replace("line ", f"{bad}:"),
                          "nothing was learned")
    assert "learned from no labels" in cli("router", "show").output


def test_learn_refuses_a_missing_or_empty_file(home: Path, cli, tmp_path: Path) -> None:
    assert_one_error_line(cli("router", "learn", str(tmp_path / "nope.jsonl")), "cannot read")
    assert_one_error_line(cli("router", "learn", str(outcome_file(tmp_path / "empty.jsonl", ["", " "]))),
                          "no labelled prompts")


def test_feedback_on_an_unknown_request_is_a_clear_error(home: Path, cli) -> None:
    assert_one_error_line(cli("feedback", "req_nope", "good"), "no routed request 'req_nope'")
    assert cli("feedback", "req_nope", "meh").exit_code in (1, 2)


# ---- through the gateway -------------------------------------------------------------------------
def test_routed_requests_are_recorded_and_feedback_teaches_the_router(
        home: Path, cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli, cli_json,
        tmp_path: Path) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    changes.set_thresholds(store, balanced_from=0.99, premium_from=0.99)  # all to basic, whose feedback teaches
    proxy = start_proxy()
    answers = [proxy.chat("auto", messages=[{"role": "user", "content": prompt}]) for prompt in SQL[:6]]
    assert all(a.status_code == 200 for a in answers)
    assert proxy.chat().status_code == 200  # sonnet: not routed by complexity, not recorded
    assert proxy.front is not None
    proxy.front.routed.flush()
    code, records = cli_json("router", "outcomes", "--json")
    assert code == 0 and len(records) == 6
    ids = [a.headers["x-broke-request-id"] for a in answers]
    assert {r["request_id"] for r in records} == set(ids)
    first = next(r for r in records if r["request_id"] == ids[0])
    assert first["slot"] == "auto" and first["tier"] == answers[0].headers["x-broke-tier"]
    assert first["backend"] == answers[0].headers["x-broke-backend"] and first["status"] == 200
    assert "prompt" not in first and all(SQL[0] not in json.dumps(r) for r in records)

    basic = [i for i, a in zip(ids, answers, strict=True) if a.headers["x-broke-tier"] == "basic"]
    assert basic == ids
    before = p_strong(cli_json, PROBE)
    said = cli("feedback", basic[0], "bad")
    assert said.exit_code == 0 and "learned from it" in said.output
    over_http = proxy.post("/v1/broke/feedback", {"request_id": basic[-1], "verdict": "bad"})
    assert over_http.status_code == 200 and over_http.json()["learned"] is True
    assert proxy.post("/v1/broke/feedback", {"request_id": "req_nope", "verdict": "bad"}).status_code == 404
    assert proxy.post("/v1/broke/feedback", {"request_id": basic[0], "verdict": "meh"}).status_code == 400
    assert proxy.post("/v1/broke/feedback", {"request_id": basic[0], "verdict": "bad"}, token="wrong").status_code \
        == 401
    assert p_strong(cli_json, PROBE) > before
    shown = cli("router", "show")
    assert "from feedback" in shown.output

    exported = tmp_path / "out.jsonl"
    assert cli("router", "outcomes", "--export", str(exported)).exit_code == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert stat.S_IMODE(os.stat(exported).st_mode) == 0o600
    assert [r["request_id"] for r in lines] == ids and lines[0]["feedback"] == ("bad" if basic[0] == ids[0] else None)
    assert "forgot 6 outcome records" in cli("router", "outcomes", "--forget").output
    assert cli_json("router", "outcomes", "--json")[1] == []


def test_the_gateway_refits_in_the_background_when_labels_arrive(
        home: Path, cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, tmp_path: Path, cli,
        prior: model.Router) -> None:
    outcomes = parse_outcomes(teach(tmp_path).read_text().splitlines(), "team")
    before = prior.estimate(PROBE).p_strong
    after = learned.learn(tmp_path / "elsewhere", outcomes, prior=prior).estimate(PROBE).p_strong
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    changes.set_thresholds(store, balanced_from=(before + after) / 2, premium_from=(before + after) / 2)
    proxy = start_proxy()
    assert proxy.front is not None
    ask = {"messages": [{"role": "user", "content": PROBE}]}
    assert proxy.chat("auto", **ask).headers["x-broke-tier"] == "basic"
    assert cli("router", "learn", str(teach(tmp_path))).exit_code == 0
    proxy.front.router_model.refit_soon()
    proxy.chat("auto", **ask)  # starts the refit off the request path
    refitting = proxy.front.router_model._refitting
    assert refitting is not None
    for _ in range(500):
        if refitting.done():
            break
        time.sleep(0.01)
    assert proxy.chat("auto", **ask).headers["x-broke-tier"] == "premium"
    assert np.isfinite(float(proxy.chat("auto", **ask).headers["x-broke-complexity"]))


def test_calibrate_on_your_own_requests(home: Path, cloud: FakeProvider, start_proxy: StartProxy,
                                        store: StateStore, cli) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    proxy = start_proxy()
    assert proxy.front is not None
    for prompt in SQL[:5]:
        assert proxy.chat("auto", messages=[{"role": "user", "content": prompt}]).status_code == 200
    proxy.front.routed.flush()
    assert_one_error_line(cli("router", "calibrate", "--strong-share", "0.5", "--own"), "5 recorded `auto` requests",
                          "too few")
    for prompt in SQL[5:] + CHAT:
        assert proxy.chat("auto", messages=[{"role": "user", "content": prompt}]).status_code == 200
    proxy.front.routed.flush()
    result = cli("router", "calibrate", "--strong-share", "0.5", "--own")
    assert result.exit_code == 0, result.output
    premium = store.load().router.premium_from
    tiers = [proxy.chat("auto", messages=[{"role": "user", "content": p}]).headers["x-broke-tier"]
             for p in SQL + CHAT]
    assert 15 <= tiers.count("premium") <= 25, (premium, tiers)


def test_a_fresh_home_loads_the_shipped_prior_without_training(broke_home: Path) -> None:
    expected = artifact.version(data_version(DATA_FILE))
    assert artifact.load_shipped(expected) is not None, \
        "the shipped prior is stale: run `.venv/bin/python -m tools.router_data.make_prior`"
    model.forget_loaded()
    start = time.perf_counter()
    router = learned.load(broke_home)
    router.estimate(PROBE)
    assert time.perf_counter() - start < 5.0
    assert not (broke_home / "router" / "model.npz").exists()  # the package's own copy serves
    model.forget_loaded()


def test_feedback_on_premium_is_recorded_but_teaches_nothing(
        home: Path, cloud: FakeProvider, start_proxy: StartProxy, store: StateStore, cli, cli_json) -> None:
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    changes.set_thresholds(store, balanced_from=0.0, premium_from=0.0)  # everything to premium
    proxy = start_proxy()
    assert proxy.front is not None
    answer = proxy.chat("auto", messages=[{"role": "user", "content": PROBE}])
    assert answer.headers["x-broke-tier"] == "premium"
    proxy.front.routed.flush()
    said = cli("feedback", answer.headers["x-broke-request-id"], "good")
    assert said.exit_code == 0 and "recorded" in said.output and "does not learn" in said.output
    assert cli_json("router", "outcomes", "--json")[1][0]["feedback"] == "good"
    assert "learned from no labels" in cli("router", "show").output
