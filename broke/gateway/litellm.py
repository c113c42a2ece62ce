"""LiteLLM as the front proxy sees it: whether it answers, and starting it when a request needs it."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp

from broke.control.runfiles import GatewayRecord, read_record
from broke.procs import is_ours

log = logging.getLogger("broke.gateway")
#: How long a request that needs LiteLLM waits for it to start.
LITELLM_WAIT_S = 120.0


class LiteLLM:
    """The LiteLLM proxy on its internal port; `bind` gives it the server's HTTP session."""

    def __init__(self, home: Path, record: GatewayRecord) -> None:
        self.home, self.record = home, record
        self.url = f"http://127.0.0.1:{record.litellm.port}"
        self.up = False
        self._lock: asyncio.Lock | None = None
        self._session: aiohttp.ClientSession | None = None

    def bind(self, session: aiohttp.ClientSession) -> None:
        """Made in the server's event loop (the lock and the session belong to it)."""
        self._session, self._lock = session, asyncio.Lock()

    def gone(self) -> None:
        """A request found no one at LiteLLM's port: the next request that needs it checks and restarts it."""
        self.up = False

    async def state(self) -> str:
        """up, starting, not started (no request needed it yet) or down."""
        return "up" if await self.answers() else await self._process()

    async def _process(self) -> str:
        """What LiteLLM's recorded process is: not started, starting (alive, not yet answering) or down."""
        record = await asyncio.to_thread(read_record, self.home)
        if record is None or record.litellm.pid <= 0:
            return "not started"
        return "starting" if await asyncio.to_thread(is_ours, record.litellm) else "down"

    async def answers(self) -> bool:
        assert self._session is not None, "bind() first"
        try:
            async with asyncio.timeout(2.0), self._session.get(self.url + "/health/liveliness") as answer:
                self.up = answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            self.up = False
        return self.up

    async def ready(self) -> str:
        """"" once LiteLLM answers (started on demand, waited for up to LITELLM_WAIT_S), else why not."""
        if self.up:
            return ""
        from broke.control.supervisor import ensure_litellm

        assert self._lock is not None, "bind() first"
        async with self._lock:
            deadline = time.monotonic() + LITELLM_WAIT_S
            while not await self.answers():
                if await self._process() != "starting":
                    log.info("starting LiteLLM: a request needs translation")
                    try:
                        await asyncio.to_thread(ensure_litellm, self.home)
                    except Exception as exc:
                        return f"LiteLLM could not be started: {exc}"
                if time.monotonic() > deadline:
                    return f"LiteLLM did not answer within {LITELLM_WAIT_S:.0f}s; see {self.record.litellm.log}"
                await asyncio.sleep(0.25)
        return ""
