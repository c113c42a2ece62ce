"""The front proxy's watch over this machine's workers, one look every POLL_S for as long as it runs.

A worker group whose supervisor died (a crash, `kill -9`: its model server dies with it) is brought
back on its port: at once the first time, then after 1 s, 2 s, 4 s … (capped) when it dies again or
does not come back. After MAX_TRIES within WINDOW_S the gateway gives up on it and says so, until
something else brings it back (`broke start`). Each restart, failed try and giving up is a line in
the rotation log, which `broke status` reads.

The pools of local models follow the worker records: a replica started by hand while the gateway
runs takes requests at once, one stopped leaves its pool.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from broke.baselines import baselines_dir
from broke.catalog import local_backend_id
from broke.errors import BrokeError
from broke.gateway.live import Watched
from broke.gateway.load import Seat, WorkerLoad
from broke.health import rotation_log
from broke.local import workers
from broke.local.weights import pool_weights
from broke.local.workers import WorkerRecord
from broke.procs import end_group
from broke.state.model import State

log = logging.getLogger("broke.gateway")

POLL_S = 0.5
#: The wait before each further restart of one worker (the first is at once), the last repeated.
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: Restarts of one worker within WINDOW_S after which the gateway gives up on it.
MAX_TRIES = 5
WINDOW_S = 600.0


@dataclass
class Revival:
    """The gateway's restarts of one worker."""

    tries: list[float] = field(default_factory=list)  # when each restart began (monotonic), within the window
    next_at: float = 0.0  # no restart before this (monotonic)
    pid: int = 0  # the supervisor the gateway last started
    busy: bool = False  # a restart is under way
    gave_up: bool = False
    error: str = ""  # why the last try failed


class WorkerWatch:
    """Brings back dead workers and keeps the proxy's pools in step with the worker records."""

    def __init__(self, home: Path, load: WorkerLoad, state: Watched[State]) -> None:
        self.home, self.load, self.state = home, load, state
        self.events = rotation_log(home)
        self.revivals: dict[str, Revival] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.weighed: tuple = ()  # what the pools' weights were last worked out from
        self.local: dict[str, list[str]] = {}  # this machine's workers, as the last look found them
        self.followed = -1  # the state generation whose nodes the pools hold

    async def start(self) -> asyncio.Task[None]:
        """One look before the proxy serves (its pools as the records are now), then one every POLL_S
        in a task, until that task is cancelled (the proxy's lifespan ends)."""
        await self._look_safely()
        return asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(POLL_S)
                await self._look_safely()
        finally:
            for task in self.tasks:
                task.cancel()

    async def _look_safely(self) -> None:
        try:
            await self.look()
        except Exception:  # an unreadable worker record, a full disk: said, and looked at again
            log.exception("cannot watch the workers")

    async def look(self) -> None:
        """One look: refresh the pools, start the restarts that are due, give up where it is time."""
        seen = await asyncio.to_thread(self._records)
        local: dict[str, list[str]] = {}
        for record, _ in seen:
            if not record.exposed:  # a worker for other machines joins a gateway as a node
                local.setdefault(record.backend, []).append(record.api_base)
        self.local = local
        self.follow(self.state.get(), force=True)
        await self._weigh(local)
        now = time.monotonic()
        for key in set(self.revivals) - {record.key for record, _ in seen}:
            if not self.revivals[key].busy:
                del self.revivals[key]  # stopped: nothing to bring back
        for record, running in seen:
            revival = self.revivals.get(record.key)
            if running:
                if revival and not revival.busy and revival.pid != record.pid:
                    del self.revivals[record.key]  # brought back by someone else: a fresh count
                continue
            if record.exposed:
                continue
            revival = revival or self.revivals.setdefault(record.key, Revival())
            if revival.busy or revival.gave_up:
                continue
            revival.tries = [t for t in revival.tries if now - t < WINDOW_S]
            if len(revival.tries) >= MAX_TRIES:
                revival.gave_up = True
                self.events.write(event=workers.GAVE_UP, worker=record.key, backend=record.backend, by="gateway",
                                  tries=len(revival.tries), window_s=WINDOW_S, error=revival.error)
                log.error("gave up restarting the worker %s after %d tries in %.0f s: %s", record.key,
                          len(revival.tries), WINDOW_S, revival.error)
                continue
            if now < revival.next_at:
                continue
            revival.tries.append(now)
            revival.busy = True
            task = asyncio.create_task(self._revive(record, revival))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def follow(self, state: State, *, force: bool = False) -> None:
        """The state's nodes into the pools: called by every request (a new generation costs one
        refresh, so a node added or removed is seen by the next request) and by every look."""
        if state.generation == self.followed and not force:
            return
        self.followed = state.generation
        nodes = {node.url: Seat(local_backend_id(node.model), name, node.token_env)
                 for name, node in state.nodes.items()}
        for change in self.load.refresh(self.local, nodes):
            log.info("worker pool: %s", change)

    async def _weigh(self, local: dict[str, list[str]]) -> None:
        """The pools' weights, worked out again when the pools, the nodes or the baselines change."""
        state = self.state.get()
        try:
            stamp: tuple = (os.stat(baselines_dir(self.home)).st_mtime_ns,)
        except FileNotFoundError:
            stamp = (0,)
        stamp += (state.generation, tuple(sorted((b, tuple(u)) for b, u in local.items())))
        if stamp == self.weighed:
            return
        self.weighed = stamp
        weights = await asyncio.to_thread(pool_weights, self.home, state, local)
        self.load.weights = {url: w.value for pool in weights.values() for url, w in pool.items()}

    def _records(self) -> list[tuple[WorkerRecord, bool]]:
        """Every worker record, and whether its supervisor runs."""
        return [(record, workers.worker_running(record)) for record in workers.read_workers(self.home)]

    async def _revive(self, dead: WorkerRecord, revival: Revival) -> None:
        """One restart of a dead worker: respawned on its port, then waited for until it answers."""
        started, attempt = time.monotonic(), len(revival.tries)
        try:
            record = await asyncio.to_thread(workers.respawn, self.home, dead.key)
            if record is None:
                return  # stopped, or brought back by someone else, meanwhile
            revival.pid = record.pid
            log.warning("the worker %s had died (supervisor pid %d); restarted it (try %d, pid %d)", dead.key,
                        dead.pid, attempt, record.pid)
            await self._ready(record)
        except (BrokeError, OSError) as exc:
            revival.error = str(exc)
            self.events.write(event=workers.RESTART_FAILED, worker=dead.key, backend=dead.backend, by="gateway",
                              attempt=attempt, error=revival.error)
            log.warning("the worker %s did not come back: %s", dead.key, exc)
        else:
            seconds = round(time.monotonic() - started, 2)
            self.events.write(event=workers.RESTARTED, worker=dead.key, backend=dead.backend, by="gateway",
                              attempt=attempt, pid=record.pid, seconds=seconds)
            log.info("the worker %s is back (pid %d) in %.1f s", dead.key, record.pid, seconds)
        finally:
            revival.busy = False
            revival.next_at = time.monotonic() + BACKOFF_S[min(len(revival.tries), len(BACKOFF_S)) - 1]

    @staticmethod
    async def _ready(record: WorkerRecord) -> None:
        """Wait until a respawned worker answers; if it dies or takes too long, end its group."""
        deadline = time.monotonic() + workers.READY_TIMEOUT_S
        while not (ready := await asyncio.to_thread(workers.readiness, record)):
            if ready is None or time.monotonic() > deadline:
                await asyncio.to_thread(end_group, record.process)
                raise workers.WorkerError(f"the worker of {record.backend} did not become ready; see {record.log}")
            await asyncio.sleep(0.2)
