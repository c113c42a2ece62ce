"""Judged samples of `auto` inside the gateway (`broke router judge`): for a share of the requests the
router decided (chat completions, Anthropic Messages and Responses, streamed or not), after the client has
its answer, ask the tier it did not choose the same request, ask the judge slot to compare the two answers
in both orders, and record the label and its cost (`broke.router.judging`). A streamed answer is read as
it passes (answers.Capture, bytes unchanged) and judged once the stream has ended well; a client that left
or a stream that broke is not judged. The other tier is asked in chat completions (a Messages or Responses
request translated by broke's own translators; one they cannot carry is not judged), not streamed; each
background request goes through the same forwarder, so it is priced in the ledger like any other (client
"judge")."""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from broke.catalog import Catalog
from broke.cost.book import CostBook
from broke.cost.usage import Usage
from broke.errors import InvalidInputError
from broke.gateway import answers
from broke.gateway.answers import CHAT, MESSAGES
from broke.gateway.traffic import Traffic, new_request_id
from broke.gateway.translate import messages_chat, responses_chat
from broke.health import Health
from broke.router import judging
from broke.routing.conversation import user_turns
from broke.routing.resolve import Resolution, resolve
from broke.state.model import State

log = logging.getLogger("broke.gateway")

#: Output tokens asked of the other tier at most (what its reservation is priced at).
ANSWER_MAX_TOKENS = 1024
#: Output tokens asked of the judge at most (a short explanation and the verdict).
JUDGE_MAX_TOKENS = 512
#: Input tokens counted per character of what is sent (over-counted on purpose: the reservation holds).
TOKENS_PER_CHAR = 0.5
JUDGE_CLIENT = "judge"
#: Characters of each last tool result shown to the judge.
RESULT_LIMIT = 1_000

Forward = Callable[..., Awaitable[Response]]


def chat_request(path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The request asked of the other tier: in chat completions, not streamed, its output capped at
    ANSWER_MAX_TOKENS (None: broke's translation cannot carry it)."""
    try:
        body = payload if path == CHAT else (messages_chat.to_chat if path == MESSAGES else
                                             responses_chat.to_chat)(payload)
    except InvalidInputError:
        return None
    asked = {**body, "model": payload["model"], "stream": False,
             "max_tokens": min(_limit(body), ANSWER_MAX_TOKENS)}
    for field in ("max_completion_tokens", "stream_options"):
        asked.pop(field, None)
    return asked


def question(payload: dict[str, Any], asked: dict[str, Any]) -> str:
    """What the judge is told the user asked: the user's turns, then the tool results the answers follow
    (an agent's request: those after the last assistant message), each cut at RESULT_LIMIT characters."""
    said = "\n\n".join(user_turns(payload))
    results: list[str] = []
    for message in reversed([m for m in asked.get("messages") or [] if isinstance(m, dict)]):
        if message.get("role") == "assistant":
            break
        if message.get("role") == "tool":
            content = message.get("content")
            text = content if isinstance(content, str) else " ".join(
                p["text"] for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str))
            results.insert(0, text[:RESULT_LIMIT] + ("…" if len(text) > RESULT_LIMIT else ""))
    if not results:
        return said
    return said + "\n\n[The tool results the assistant answers]\n" + "\n".join(results)


def other_tier(chosen: str, state: State) -> tuple[str, float] | None:
    """The tier to compare with and a p_strong that lands in it: premium for basic and balanced answers,
    the cheapest configured tier for premium ones (None: no such tier has backends)."""
    tiers = state.router.tiers
    if chosen != "premium":
        return ("premium", state.router.premium_from) if tiers.get("premium") else None
    if tiers.get("basic"):
        return "basic", 0.0
    return ("balanced", state.router.balanced_from) if tiers.get("balanced") else None


class Judge:
    """Starts judged samples after answers and runs them in the background."""

    def __init__(self, home: Path, catalog: Catalog, costs: CostBook, traffic: Traffic, forward: Forward,
                 key_names: dict[str, str], learned: Callable[[], None]) -> None:
        self.home, self.catalog, self.costs, self.traffic = home, catalog, costs, traffic
        self.forward, self.key_names, self.learned = forward, key_names, learned
        self.random = random.Random()
        self._stopped_said = False

    def after(self, response: Response, request_id: str, path: str, payload: dict[str, Any],
              resolution: Resolution, state: State, health: Health) -> None:
        """Sample this answered request; if it is judged, run the judgement after the response is sent.
        Never fails the client's answer."""
        try:
            self._sample(response, request_id, path, payload, resolution, state, health)
        except Exception:
            log.exception("request %s was not sampled for judging", request_id)

    def _sample(self, response: Response, request_id: str, path: str, payload: dict[str, Any],
                resolution: Resolution, state: State, health: Health) -> None:
        judge = state.router.judge
        estimate = resolution.estimate
        if (not judge.slot or judge.rate <= 0 or path not in answers.APIS or not resolution.tier
                or estimate is None or getattr(estimate, "vector", None) is None or response.status_code != 200
                or self.random.random() >= judge.rate):
            return
        answer: Callable[[], str | None]
        if isinstance(response, StreamingResponse):  # read as it passes; judged if it ended well
            capture = answers.Capture(path)
            response.body_iterator = capture.passing(response.body_iterator)
            answer = capture.answer
        elif isinstance(body := getattr(response, "body", None), bytes | memoryview):
            answer = functools.partial(answers.whole, path, bytes(body))  # read after it was sent
        else:
            return
        task = BackgroundTask(self.judge, request_id, path, payload, resolution, answer, state, health)
        if response.background is None:
            response.background = task
        else:
            first = response.background

            async def both() -> None:
                await first()
                await task()
            response.background = BackgroundTask(both)

    async def judge(self, request_id: str, path: str, payload: dict[str, Any], resolution: Resolution,
                    answer: Callable[[], str | None], state: State, health: Health) -> None:
        """Judge the answer (a stream's: once it has ended) unless there is none or the request cannot
        be asked in chat completions."""
        try:
            given, asked = answer(), chat_request(path, payload)
            if given is not None and asked is not None:
                await self._judge(request_id, payload, asked, resolution, given, state, health)
        except Exception:
            log.exception("judging request %s failed; nothing was learned from it", request_id)

    async def _judge(self, request_id: str, payload: dict[str, Any], asked: dict[str, Any], resolution: Resolution,
                     answer: str, state: State, health: Health) -> None:
        judge, now = state.router.judge, time.time()
        other = other_tier(resolution.tier, state)
        if other is None:
            return
        tier, pin = other
        other_res = resolve(payload["model"], state, health, env=self.key_names, now=now, catalog=self.catalog,
                            p_strong=pin)
        judge_res = resolve(judge.slot, state, health, env=self.key_names, now=now, catalog=self.catalog)
        if other_res.chosen is None or judge_res.chosen is None:
            return
        asked_about = question(payload, asked)
        size = len(orjson.dumps(asked))
        reserve = self._priced(other_res, state, size, asked["max_tokens"])
        judged_chars = len(judging.SYSTEM) + len(asked_about) + len(answer) + 4 * ANSWER_MAX_TOKENS + 400
        judge_cost = self._priced(judge_res, state, judged_chars, JUDGE_MAX_TOKENS)
        if reserve is None or judge_cost is None:
            log.warning("judging skipped: a backend it would ask has no price, so the budget cannot be held")
            return
        if not await asyncio.to_thread(judging.reserve, self.home, request_id, judge.slot, reserve + 2 * judge_cost,
                                       judge.budget_usd):
            if not self._stopped_said:
                log.warning("judging stopped: its budget of $%.2f is used", judge.budget_usd)
                self._stopped_said = True
            return
        spent: list[float] = []
        found: judging.Winner | None = None
        try:
            theirs = await self._ask(other_res, asked, state, health, spent)
            if theirs is None:
                return
            weak, strong = (answer, theirs) if tier == "premium" else (theirs, answer)
            verdicts = []
            for a, b in ((weak, strong), (strong, weak)):
                asking = {"model": judge.slot, "stream": False, "max_tokens": JUDGE_MAX_TOKENS,
                          "messages": judging.judge_messages(asked_about, a, b)}
                said = await self._ask(judge_res, asking, state, health, spent)
                if said is None:
                    return
                verdicts.append(judging.verdict(said))
            found = judging.winner(verdicts[0], verdicts[1])
        finally:
            await asyncio.to_thread(judging.settle, self.home, request_id, sum(spent), found)
        prior, vector = getattr(resolution.estimate, "prior", None), getattr(resolution.estimate, "vector", None)
        if vector is None:
            return
        await asyncio.to_thread(judging.record_label, self.home, request_id, found,
                                prior if prior is not None else resolution.p_strong or 0.0, vector)
        self.learned()

    def _priced(self, resolution: Resolution, state: State, chars: int, output: int) -> float | None:
        """The most asking `resolution`'s backends could cost for `chars` characters in, `output` tokens out."""
        costs = []
        for candidate in resolution.attempts or ((resolution.chosen,) if resolution.chosen else ()):
            rates = self.costs.rates(candidate.backend, state)
            if rates is None:
                return None
            costs.append(rates.cost(Usage(int(chars * TOKENS_PER_CHAR) + 1, output)))
        return max(costs, default=None)

    async def _ask(self, resolution: Resolution, payload: dict[str, Any], state: State, health: Health,
                   spent: list[float]) -> str | None:
        """Ask through the forwarder (priced in the ledger as client "judge"); the answer's text."""
        request = Request({"type": "http", "method": "POST", "path": CHAT, "headers": []})
        request_id = new_request_id()
        trace = self.traffic.begin(JUDGE_CLIENT, resolution.slot, str(payload["model"]), resolution.generation,
                                   request_id)
        response = await self.forward(request, CHAT, payload, resolution, state, health, time.perf_counter(), trace,
                                      lambda _: None)
        spent.append(trace.cost_usd or 0.0)
        if response.status_code != 200:
            return None
        return answers.whole(CHAT, bytes(response.body))


def _limit(payload: dict[str, Any]) -> int:
    given = [payload.get(f) for f in ("max_tokens", "max_completion_tokens")]
    limits = [n for n in given if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    return limits[0] if limits else ANSWER_MAX_TOKENS
