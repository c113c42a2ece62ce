"""The gateway's outcome records of requests the `auto` router decided (`broke.router.outcomes`), and
the feedback endpoint frameworks label them through."""
from __future__ import annotations

import asyncio
from collections import OrderedDict
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

#: Decisions whose answers have not ended yet, kept at most (a request refused after its decision never ends).
PENDING = 4096


class OutcomeLog:
    """Remembers each `auto` decision's embedding until its answer ends, then appends the outcome record."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.pending: OrderedDict[str, tuple[float | None, Any]] = OrderedDict()
        self._appender: Appender | None = None

    def decided(self, request_id: str, estimate: Any) -> None:
        """The router estimated this request (`estimate` None: it did not)."""
        if estimate is None:
            return
        self.pending[request_id] = (getattr(estimate, "prior", None), getattr(estimate, "vector", None))
        while len(self.pending) > PENDING:
            self.pending.popitem(last=False)

    def answered(self, trace: Trace) -> None:
        """The request's answer ended: append its outcome record (the writing happens on the Appender's thread)."""
        if trace.request_id not in self.pending:
            return
        prior, vector = self.pending.pop(trace.request_id)
        if self._appender is None:
            self._appender = Appender(self.home, outcomes.SCHEMA, outcomes.INSERT, table=outcomes.TABLE,
                                      keep=outcomes.KEEP)
        self._appender.add((trace.request_id, trace.ts, trace.client, trace.slot, trace.tier, trace.backend,
                            trace.p_strong, prior, trace.latency_ms, trace.tokens, trace.status,
                            None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()))

    def flush(self) -> None:
        if self._appender is not None:
            self._appender.flush()

    def close(self) -> None:
        """Write what is queued (the gateway stops)."""
        if self._appender is not None:
            self._appender.close()


async def take_feedback(request: Request, home: Path, owner: str, log: OutcomeLog, model: RouterModel) -> Response:
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
    await asyncio.to_thread(log.flush)  # the request's own record may still be on its way to the disk
    try:
        learned = await asyncio.to_thread(outcomes.give_feedback, home, body["request_id"], body["verdict"], owner)
    except InvalidInputError as exc:
        return error_body(400, "invalid_request_error", str(exc))
    except NotFoundError as exc:
        return error_body(404, "not_found_error", str(exc))
    except RecordsError as exc:
        return error_body(500, "api_error", str(exc))
    if learned:
        model.refit_soon()
    return JSONResponse({"request_id": body["request_id"], "verdict": body["verdict"], "learned": learned})
