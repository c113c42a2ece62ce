"""The gateway's outcome records of requests the `auto` router decided and of those to the slots the user
records too (`broke.router.outcomes`), and the feedback endpoint frameworks label them through."""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broke.errors import InvalidInputError, NotFoundError
from broke.gateway.complexity import RouterModel
from broke.gateway.traffic import Trace
from broke.gateway.wire import error_body
from broke.records import Appender, RecordsError
from broke.router import outcomes
from broke.routing.conversation import conversation_text
from broke.state.model import RecordConfig

log = logging.getLogger("broke.gateway")

#: Decisions whose answers have not ended yet, kept at most (a request refused after its decision never ends).
PENDING = 4096
#: How long the records writer waits before estimating and writing (the answer goes out first, undisturbed).
LINGER_S = 0.02


@dataclass(frozen=True)
class _Pending:
    """What a request's outcome record needs besides its trace."""

    estimate: Any  # the router's estimate (None: estimated when the record is written, from `text`)
    text: str  # the prompt's text as the router reads it ("" when neither estimated later nor kept)
    keep_text: bool


class OutcomeLog:
    """Remembers what each recorded request's outcome record needs until its answer ends, then appends the
    record. Recorded: every request a router estimated (`auto`), and the requests to the slots the state's
    `router.record` names, whose prompt vector is estimated by `router` (the same estimator, blocking) on the
    writer's thread once the answer has ended."""

    def __init__(self, home: Path, router: Callable[[], Any]) -> None:
        self.home, self.router = home, router
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self._appender: Appender | None = None
        self._prompts: Appender | None = None

    def decided(self, request_id: str, slot: str, estimate: Any, record: RecordConfig,
                turns: Callable[[], Sequence[str]], counting: bool = False) -> None:
        """The request to `slot` is about to be forwarded (`estimate`: the router's, None if it made none;
        `turns`: the user's turns, asked for only when the record needs the text). A token count (`counting`)
        no router estimated is not recorded: there is no answer to give feedback on."""
        if estimate is None and (counting or not record.records(slot)):
            return
        keep = record.prompt_text
        text = conversation_text(turns()) if keep or estimate is None else ""
        self.pending[request_id] = _Pending(estimate, text, keep)
        while len(self.pending) > PENDING:
            self.pending.popitem(last=False)

    def answered(self, trace: Trace) -> None:
        """The request's answer ended: append its outcome record (the writing happens on the Appender's thread)."""
        entry = self.pending.pop(trace.request_id, None)
        if entry is None:
            return
        if self._appender is None:
            self._appender = Appender(self.home, outcomes.SCHEMA, outcomes.INSERT, table=outcomes.TABLE,
                                      keep=outcomes.KEEP, linger_s=LINGER_S)
        known = (trace.request_id, trace.ts, trace.client, trace.slot, trace.tier, trace.backend)
        ended = (trace.latency_ms, trace.tokens, trace.status)
        if entry.estimate is not None:
            _, prior, vector = _estimated(entry.estimate)
            self._appender.add((*known, trace.p_strong, prior, *ended, vector))
        else:
            def row() -> tuple[object, ...]:
                p_strong, prior, vector = self._estimate(entry.text)
                return (*known, p_strong, prior, *ended, vector)

            self._appender.add(row)
        if entry.keep_text and entry.text:
            if self._prompts is None:
                self._prompts = Appender(self.home, outcomes.SCHEMA, outcomes.PROMPT_INSERT,
                                         table=outcomes.PROMPTS_TABLE, keep=outcomes.KEEP, linger_s=LINGER_S)
            self._prompts.add((trace.request_id, *outcomes.prompt_row(entry.text)))

    def _estimate(self, text: str) -> tuple[float | None, float | None, bytes | None]:
        """p_strong, the prior's and the vector of a prompt no router estimated (on the writer's thread)."""
        if not text:
            return None, None, None
        try:
            return _estimated(self.router().estimate(text))
        except Exception:
            log.exception("the prompt of a recorded request was not estimated; its record has no vector")
            return None, None, None

    def flush(self) -> None:
        for appender in (self._appender, self._prompts):
            if appender is not None:
                appender.flush()

    def close(self) -> None:
        """Write what is queued (the gateway stops)."""
        for appender in (self._appender, self._prompts):
            if appender is not None:
                appender.close()


def _estimated(estimate: Any) -> tuple[float | None, float | None, bytes | None]:
    """An estimate's p_strong, prior p_strong and vector, as an outcome row stores them."""
    vector = getattr(estimate, "vector", None)
    return (getattr(estimate, "p_strong", None), getattr(estimate, "prior", None),
            None if vector is None else np.asarray(vector, dtype=np.float32).tobytes())


async def take_feedback(request: Request, home: Path, owner: str, routed: OutcomeLog,
                        model: RouterModel) -> Response:
    """`POST /v1/broke/feedback` `{"request_id": …, "verdict": "good"|"bad"}` from the client that made the
    request: stored, and learned from (refitted in the background) on a learning tier."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str) \
            or not isinstance(body.get("verdict"), str):
        return error_body(400, "invalid_request_error", 'the body must be JSON {"request_id": "...", '
                                                        '"verdict": "good" or "bad"}')
    await asyncio.to_thread(routed.flush)  # the request's own record may still be on its way to the disk
    try:
        given = await asyncio.to_thread(outcomes.give_feedback, home, body["request_id"], body["verdict"], owner)
    except InvalidInputError as exc:
        return error_body(400, "invalid_request_error", str(exc))
    except NotFoundError as exc:
        return error_body(404, "not_found_error", str(exc))
    except RecordsError as exc:
        return error_body(500, "api_error", str(exc))
    if given.learned:
        model.refit_soon()
    return JSONResponse({"request_id": body["request_id"], "verdict": body["verdict"], "learned": given.learned,
                         **({"why_not": given.why_not} if given.why_not else {})})
