"""Judged samples of `auto` (`broke router judge`): after the client's answer the gateway asks the other tier
and the judge slot (both orders), records the label and its cost, and never passes its budget."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from broke import changes
from broke.router import artifact, judging, model
from broke.router.data import DATA_FILE, data_version, load_rows
from broke.state.model import Price
from broke.state.store import StateStore
from conftest import assert_one_error_line
from fake_conversation import Reply, Script, Step
from fake_provider import FakeProvider
from tools.router_data.make_data import write

if TYPE_CHECKING:
    from proxy_harness import Proxy

pytest_plugins = ("proxy_harness",)
pytestmark = pytest.mark.timeout(120)

StartProxy = Callable[..., "Proxy"]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"
PROMPT = "Write a SQL query joining orders and customers to find the top 7 customers by revenue in 2023"
SQL = [f"Write a SQL query joining orders and customers to find the top {n} customers by revenue in {y}"
       for n, y in zip(range(3, 13), range(2001, 2011), strict=True)]
CHAT = [f"Say hello to my friend number {n} and wish them a nice {d}" for n, d in
        zip(range(10), ["day", "week", "weekend", "evening", "morning"] * 2, strict=True)]
ASK = {"messages": [{"role": "user", "content": PROMPT}]}


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> model.Router:
    rows = load_rows()
    path = tmp_path_factory.mktemp("data") / "small.jsonl.gz"
    write([r for i, r in enumerate(rows) if r["source"] == "arena_hard_v2" or i % 8 == 0], path)
    return model.train(load_rows(path))


@pytest.fixture
def home(prior: model.Router, broke_home: Path) -> Path:
    artifact.save(broke_home, artifact.version(data_version(DATA_FILE)), prior)
    model.forget_loaded()
    yield broke_home
    model.forget_loaded()


@pytest.fixture
def routed(home: Path, cloud: FakeProvider, store: StateStore) -> StateStore:
    """basic = model-a (every request lands there), premium = model-b, opus (the judge) = model-b; all priced.
    model-b, asked as a judge, prefers the premium answer whichever place it is in."""
    changes.set_tier(store, "basic", [MODEL_A])
    changes.set_tier(store, "premium", [MODEL_B])
    changes.set_thresholds(store, balanced_from=0.99, premium_from=0.99)
    changes.swap(store, [("opus", MODEL_B)])
    for backend in (MODEL_A, MODEL_B):
        changes.set_prices(store, backend, Price(input=1.0, output=2.0))
    cloud.use(PrefersPremium([], "model-b"))
    return store


@dataclass(frozen=True)
class PrefersPremium(Script):
    """A judge that prefers model-b's answer in either place to a SQL question, and calls any other a tie;
    other requests get the default answer."""

    def step_for(self, api: str, payload: dict[str, Any]) -> Step | None:
        text = json.dumps(payload.get("messages"))
        if "impartial judge" not in text:
            return None  # asked as the premium tier
        if "SQL" not in text:
            return Reply("Both will do. [[C]]")
        first = text.split("Assistant A's Answer]")[1].removeprefix("\\n")
        return Reply("Premium is better. [[A]]" if first.startswith("fake:model-b") else "Premium is better. [[B]]")


def judge_requests(cloud: FakeProvider) -> list[dict]:
    return [r for r in cloud.requests if "[User Question]" in r["messages_text"]]


def wait_settled(home: Path, count: int) -> None:
    """The TestClient returns after the app's background work; this only guards the label write."""
    assert judging.spending(home)[0] == count


def test_a_sampled_request_is_judged_in_both_orders_and_teaches_the_router(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli, cli_json) -> None:
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "1").exit_code == 0
    sent_at: list[int] = []

    def wrap(app: Any) -> Any:
        async def watched(scope: Any, receive: Any, send: Any) -> None:
            async def sending(message: Any) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    sent_at.append(len(cloud.requests))  # what the fake had been asked when the answer was sent
                await send(message)
            await app(scope, receive, sending)
        return watched

    proxy = start_proxy(wrap=wrap)
    before = cli_json("estimate", PROMPT)[1]["p_strong"]
    answer = proxy.chat("auto", **ASK)
    assert answer.status_code == 200 and answer.headers["x-broke-tier"] == "basic"
    assert sent_at == [1]  # the client's answer was sent before any judging request
    asked = cloud.requests
    assert [r["model"] for r in asked] == ["model-a", "model-b", "model-b", "model-b"]
    judges = judge_requests(cloud)
    assert len(judges) == 2
    assert judges[0]["messages_text"] != judges[1]["messages_text"]  # both orders
    wait_settled(home, 1)
    code, shown = cli_json("router", "show")
    assert code == 0 and shown["learned"]["by_origin"] == {"judge": 1}
    assert shown["judging"]["judged"] == 1 and 0 < shown["judging"]["spent_usd"] < 1
    assert shown["learned"]["strong_preferred"] == 1.0  # premium won in both orders: strong was needed

    for prompt in SQL + CHAT:  # more judged labels: the router learns that SQL needs the strong tier
        assert proxy.chat("auto", messages=[{"role": "user", "content": prompt}]).status_code == 200
    wait_settled(home, 21)
    assert cli_json("estimate", PROMPT)[1]["p_strong"] > before
    assert cli_json("router", "show")[1]["learned"]["by_origin"] == {"judge": 21}
    assert "judging: 100% of `auto` chat requests by slot opus, 21 judged" in cli("router", "show").output


def test_judging_stops_when_the_budget_would_be_passed(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli, cli_json) -> None:
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "1").exit_code == 0
    proxy = start_proxy()
    assert proxy.chat("auto", **ASK).status_code == 200
    judged, spent, held = judging.spending(home)
    assert judged == 1 and 0 < spent < held
    # room for one more judgement (its reservation, released to what it costs once settled), not two
    budget = spent + held + spent / 2
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", f"{budget:.9f}").exit_code == 0
    for _ in range(3):
        assert proxy.chat("auto", **ASK).status_code == 200
    assert len(judge_requests(cloud)) == 4  # the first judgement and one more, both in both orders
    judged, spent, _ = judging.spending(home)
    assert judged == 2 and spent <= budget
    assert "judging has stopped" in cli("router", "show").output


def test_rate_zero_and_off_judge_nothing(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli) -> None:
    assert cli("router", "judge", "--slot", "opus", "--rate", "0", "--budget-usd", "5").exit_code == 0
    proxy = start_proxy()
    for _ in range(3):
        assert proxy.chat("auto", **ASK).status_code == 200
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "5").exit_code == 0
    assert proxy.chat("auto", stream=True, **ASK).status_code == 200  # streamed: never judged
    assert cli("router", "judge", "--off").exit_code == 0
    assert proxy.chat("auto", **ASK).status_code == 200
    assert [r["model"] for r in cloud.requests] == ["model-a"] * 5
    assert judging.spending(home)[0] == 0
    assert "judging: off" in cli("router", "show").output


@pytest.mark.parametrize(("args", "fragment", "code"), [
    (["--slot", "opus", "--rate", "2", "--budget-usd", "1"], "--rate must be", 1),
    (["--slot", "opus", "--rate", "0.1", "--budget-usd", "-1"], "--budget-usd must be", 1),
    (["--slot", "nope", "--rate", "0.1", "--budget-usd", "1"], "unknown slot 'nope'", 1),
    (["--slot", "opus", "--rate", "0.1"], "--budget-usd", 2),
    (["--off", "--rate", "0.1"], "--off takes no", 2),
])
def test_bad_input_is_one_line_and_changes_nothing(broke_home: Path, store: StateStore, cli, args: list[str],
                                                   fragment: str, code: int) -> None:
    before = store.load()
    assert_one_error_line(cli("router", "judge", *args), fragment, code=code)
    after = store.load()
    assert after.generation == before.generation and after.router.judge == before.router.judge
