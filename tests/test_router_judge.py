"""Judged samples of `auto` (`broke router judge`): after the client's answer the gateway asks the other tier
and the judge slot (both orders), records the label and its cost, and never passes its budget."""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from broke import changes
from broke.gateway import answers
from broke.gateway.judged import chat_request
from broke.router import judging
from broke.state.model import Price
from broke.state.store import StateStore
from conftest import assert_one_error_line
from fake_conversation import Reply, Script, Step, ToolCall
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from proxy_harness import Proxy

pytest_plugins = ("proxy_harness", "router_prior")
pytestmark = pytest.mark.timeout(120)

StartProxy = Callable[..., "Proxy"]
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"
PROMPT = "Write a SQL query joining orders and customers to find the top 7 customers by revenue in 2023"
SQL = [f"Write a SQL query joining orders and customers to find the top {n} customers by revenue in {y}"
       for n, y in zip(range(3, 13), range(2001, 2011), strict=True)]
CHAT = [f"Say hello to my friend number {n} and wish them a nice {d}" for n, d in
        zip(range(10), ["day", "week", "weekend", "evening", "morning"] * 2, strict=True)]
ASK = {"messages": [{"role": "user", "content": PROMPT}]}
WRITE = {"file_path": "/tmp/top.sql", "content": "SELECT customer, sum(total) AS revenue FROM orders JOIN customers"}
SCHEMA = {"type": "object", "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}}}
#: An agent's request (Claude Code's, Codex's) offering a Write tool, by client API.
AGENT = {
    "/v1/messages": {"max_tokens": 300, "messages": [{"role": "user", "content": PROMPT}],
                     "tools": [{"name": "Write", "description": "Write a file", "input_schema": SCHEMA}]},
    "/v1/responses": {"max_output_tokens": 300, "store": False, "input": [{"role": "user", "content": PROMPT}],
                      "tools": [{"type": "function", "name": "Write", "description": "Write a file",
                                 "parameters": SCHEMA}]},
}
#: What every answer makes fresh: its ids and its time.
FRESH = re.compile(rb'"(id|item_id|call_id|created_at|created)":\s*("[^"]*"|\d+)')


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
            return super().step_for(api, payload)  # asked as a tier
        if "SQL" not in text:
            return Reply("Both will do. [[C]]")
        first = text.split("Assistant A's Answer]")[1].removeprefix("\\n")
        return Reply("Premium is better. [[A]]" if first.startswith("fake:model-b") else "Premium is better. [[B]]")


def judge_requests(cloud: FakeProvider) -> list[dict]:
    return [r for r in cloud.requests if "[User Question]" in r["messages_text"]]


def fresh_masked(body: bytes) -> bytes:
    return FRESH.sub(rb'"\1":"*"', body)


def noting(cloud: FakeProvider, sent_at: list[int]) -> Callable[[Any], Any]:
    """A wrap noting how many requests the fake had been asked when each answer's last byte was sent."""
    def wrap(app: Any) -> Any:
        async def watched(scope: Any, receive: Any, send: Any) -> None:
            async def sending(message: Any) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    sent_at.append(len(cloud.requests))
                await send(message)
            await app(scope, receive, sending)
        return watched
    return wrap


def leaving(app: Any) -> Any:
    """The app served to a client that leaves once part of a tool call's arguments has come (the server
    tells the app `http.disconnect`, as uvicorn does)."""
    async def watched(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        gone, asked = asyncio.Event(), [False]

        async def receiving() -> Any:
            if not asked[0]:
                message = await receive()
                asked[0] = not message.get("more_body")
                return message
            await gone.wait()
            return {"type": "http.disconnect"}

        async def sending(message: Any) -> None:
            if gone.is_set():
                return
            await send(message)
            if message["type"] == "http.response.body" and b"partial_json" in message.get("body", b""):
                gone.set()
        await app(scope, receiving, sending)
    return watched


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
    assert "judging: 100% of `auto` requests by slot opus, 21 judged" in cli("router", "show").output


@pytest.mark.parametrize("agent", [False, True])
def test_judging_stops_when_the_budget_would_be_passed(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli, agent: bool) -> None:
    """A chat request answered whole, or an agent's streamed /v1/messages request answered with a tool call."""
    cloud.script(ToolCall("Write", WRITE), model="model-a")
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "1").exit_code == 0
    proxy = start_proxy()

    def ask() -> None:
        answer = proxy.post("/v1/messages", {"model": "auto", "stream": True, **AGENT["/v1/messages"]}) if agent \
            else proxy.chat("auto", **ASK)
        assert answer.status_code == 200

    ask()
    judged, spent, held = judging.spending(home)
    assert judged == 1 and 0 < spent < held
    # room for one more judgement (its reservation, released to what it costs once settled), not two
    budget = spent + held + spent / 2
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", f"{budget:.9f}").exit_code == 0
    for _ in range(3):
        ask()
    assert len(judge_requests(cloud)) == 4  # the first judgement and one more, both in both orders
    judged, spent, _ = judging.spending(home)
    assert judged == 2 and spent <= budget
    assert "judging has stopped" in cli("router", "show").output


def test_rate_zero_and_off_judge_nothing(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli) -> None:
    assert cli("router", "judge", "--slot", "opus", "--rate", "0", "--budget-usd", "5").exit_code == 0
    proxy = start_proxy()
    for stream in (False, True, False):
        assert proxy.chat("auto", stream=stream, **ASK).status_code == 200
    assert cli("router", "judge", "--off").exit_code == 0
    for stream in (False, True):
        assert proxy.chat("auto", stream=stream, **ASK).status_code == 200
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


@pytest.mark.parametrize(("path", "stream"), [("/v1/messages", True), ("/v1/responses", True),
                                              ("/v1/messages", False), ("/v1/responses", False)])
def test_an_agent_answer_with_a_tool_call_is_judged_once_the_client_has_it_unchanged(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli, cli_json,
        path: str, stream: bool) -> None:
    cloud.script(ToolCall("Write", WRITE), model="model-a")  # basic answers with a tool call, premium in text
    sent_at: list[int] = []
    proxy = start_proxy(wrap=noting(cloud, sent_at))
    body = {"model": "auto", "stream": stream, **AGENT[path]}
    unjudged = proxy.post(path, body)
    assert unjudged.status_code == 200 and [r["model"] for r in cloud.requests] == ["model-a"]
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "1").exit_code == 0
    cloud.reset_requests()
    sent_at.clear()

    judged = proxy.post(path, body)
    assert judged.status_code == 200 and judged.headers["x-broke-tier"] == "basic"
    assert fresh_masked(judged.content) == fresh_masked(unjudged.content)  # byte for byte, but for fresh ids
    assert b'"name":"Write"' in judged.content
    assert sent_at == [1]  # the client's last byte went before any judging request
    asked = cloud.requests
    assert [r["model"] for r in asked] == ["model-a", "model-b", "model-b", "model-b"]
    other = asked[1]  # the premium tier, asked the same in chat completions, not streamed, capped as asked
    assert other["api"] == "chat" and not other["stream"] and other["tools"] == ["Write"]
    assert other["body"]["max_tokens"] == 300 and other["messages_text"] == PROMPT
    judges = judge_requests(cloud)
    assert len(judges) == 2 and judges[0]["messages_text"] != judges[1]["messages_text"]
    for shown in (re.search(r"^\[tool call\] Write\((.*)\)$", j["body"]["messages"][1]["content"], re.M)
                  for j in judges):
        assert shown and json.loads(shown[1]) == WRITE  # the call, its arguments whole
    wait_settled(home, 1)
    code, shown = cli_json("router", "show")
    assert code == 0 and shown["learned"]["by_origin"] == {"judge": 1}
    assert shown["learned"]["strong_preferred"] == 1.0  # premium's answer won in both orders


def test_a_stream_the_client_leaves_is_not_judged(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli) -> None:
    cloud.script(ToolCall("Write", WRITE), model="model-a")
    cloud.chunk_delay_s = 0.05  # the tool call's arguments come in many pieces: the client leaves midway
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "1").exit_code == 0
    proxy = start_proxy(wrap=leaving)
    answer = proxy.post("/v1/messages", {"model": "auto", "stream": True, **AGENT["/v1/messages"]})
    assert answer.status_code == 200 and b"partial_json" in answer.content and b"message_stop" not in answer.content
    assert [r["model"] for r in cloud.requests] == ["model-a"]
    assert judging.spending(home) == (0, 0.0, 0.0)


def test_an_answer_is_shown_to_the_judge_within_its_limits() -> None:
    huge = "x" * 50_000
    capture = answers.Capture("/v1/messages")
    events = [{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Writing it."}},
              {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "name": "Write"}},
              {"type": "content_block_delta", "index": 1,
               "delta": {"type": "input_json_delta", "partial_json": '{"content": "' + huge + '"}'}},
              {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "name": "Bash"}},
              {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": huge}}]
    for event in events:
        capture.feed(b"event: x\ndata: " + json.dumps(event).encode() + b"\n\n")
    assert capture.answer() is None  # no message_stop yet: the stream has not ended
    capture.feed(b'data: {"type": "message_stop"}\n\n')
    shown = capture.answer()
    assert shown is not None and len(shown) < answers.TEXT_LIMIT + 100
    text, write, bash = shown.split("\n")  # the text (all of it that fits) first, then each call
    assert text.startswith("Writing it.xxx")
    assert write == '[tool call] Write({"content": "' + "x" * (answers.ARGUMENTS_LIMIT - 13) + "…)"
    assert bash == "[tool call] Bash()"
    broken = answers.Capture("/v1/chat/completions")
    broken.feed(b'data: {"choices": [{"delta": {"content": "half"}, "finish_reason": "stop"}]}\n\n')
    assert broken.answer() == "half"
    broken.feed(b'event: error\ndata: {"type": "error", "error": {"message": "cut"}}\n\n')
    assert broken.answer() is None
    assert answers.whole("/v1/chat/completions", b'{"choices": [{"message": {"content": ""}}]}') is None



def test_the_judge_reads_the_tool_results_an_agent_answers_and_an_untranslatable_request_is_not_judged(
        home: Path, cloud: FakeProvider, routed: StateStore, start_proxy: StartProxy, cli) -> None:
    assert cli("router", "judge", "--slot", "opus", "--rate", "1", "--budget-usd", "1").exit_code == 0
    proxy = start_proxy()
    history = [{"role": "user", "content": PROMPT},
               {"role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "Write", "input": WRITE}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                             "content": "File written: 7 rows. " + "r" * 3_000},
                                            {"type": "text", "text": "<system-reminder>keep going</system-reminder>"}]}]
    answer = proxy.post("/v1/messages", {**AGENT["/v1/messages"], "model": "auto", "stream": True, "messages": history})
    assert answer.status_code == 200
    judges = judge_requests(cloud)
    assert len(judges) == 2
    asked = judges[0]["body"]["messages"][1]["content"]
    told = (f"[User Question]\n{PROMPT}\n\n<system-reminder>keep going</system-reminder>\n\n"
            "[The tool results the assistant answers]\nFile written: 7 rows. r")
    assert told in asked
    assert "r" * 1_000 not in asked and "r…" in asked  # the result cut
    assert judging.spending(home)[0] == 1

    # the other tier is asked through broke's translation, which cannot carry a stored response's continuation
    assert chat_request("/v1/responses", {"model": "auto", "input": "hi", "previous_response_id": "resp_1"}) is None
