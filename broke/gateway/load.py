"""Requests in flight on local workers: which replica takes the next one, and when a model is busy.

The front proxy sends chat completions for a local model straight to one of its workers (a pool
of replicas). A replica whose health record (`workers.NAME@PORT`) is unusable, or that failed
earlier in the same request, is passed over for its twins; the model is *busy* when every live
replica serves its concurrency limit, and the resolver then tries it after the slot's other
candidates.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from broke.catalog import local_model_name
from broke.health import UNUSABLE, Health
from broke.state.model import State

#: Requests one worker serves at once when its model sets no `concurrency`: mlx_lm.server's
#: default decode batch (`--decode-concurrency 32`).
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class Lease:
    """One request's hold on a local model (and on one of its workers, when sent there directly)."""

    backend: str
    url: str | None


def worker_key(backend: str, url: str) -> str:
    """The worker's name in health.json (`NAME@PORT`) for one of a local model's worker URLs."""
    return f"{local_model_name(backend)}@{urlsplit(url).port}"


@dataclass(frozen=True)
class Seat:
    """A node's place in a pool: the pool (backend), the node's name and the variable holding its token."""

    backend: str
    name: str
    token_env: str | None = None


#: What `x-broke-node` says for a worker of this machine.
LOCAL = "local"


def replica_name(backend: str, url: str, node: str) -> str:
    """A replica's name: `NAME@PORT` for this machine's workers (as in health.json), `host:port` for a node's."""
    return worker_key(backend, url) if node == LOCAL else urlsplit(url).netloc


class WorkerLoad:
    def __init__(self, pools: Mapping[str, list[str]]) -> None:
        self.pools = {backend: list(urls) for backend, urls in pools.items()}  # backend -> worker URLs
        self.nodes: dict[str, Seat] = {}  # a node's URL -> its seat (the state's nodes, as last refreshed)
        self.weights: dict[str, float] = {}  # worker URL -> its measured speed for its model (pool weights)
        self.on_worker: Counter[str] = Counter()  # worker URL -> requests in flight there
        self.on_backend: Counter[str] = Counter()  # backend -> requests in flight (any path)
        self.turns: Counter[str] = Counter()

    def refresh(self, local: Mapping[str, list[str]], nodes: Mapping[str, Seat]) -> list[str]:
        """Follow this machine's worker records (`local`: backend -> API bases) and the state's nodes
        (URL -> seat): a replica or node added since joins its pool, one stopped or removed leaves (a
        removed node drains: no new request goes there, those in flight finish). A model left with
        no worker of this machine keeps its last ones (a request there fails over as it did), never a
        removed node. Returns what changed, for the log."""
        changes = []
        joined: dict[str, list[str]] = {}
        for url, seat in nodes.items():
            joined.setdefault(seat.backend, []).append(url)
        gone = set(self.nodes) - set(nodes)
        self.nodes = dict(nodes)
        for backend in sorted(set(self.pools) | set(local) | set(joined)):
            old = self.pools.get(backend, [])
            new = [*local.get(backend, []), *joined.get(backend, [])]
            if not new:
                new = [url for url in old if url not in gone]
            if new == old:
                continue
            changes += [f"{url} joined {backend}" for url in new if url not in old]
            changes += [f"{url} left {backend}" for url in old if url not in new]
            self.pools[backend] = new
        return changes

    def where(self, url: str) -> str:
        """The node a worker URL belongs to, or `local`."""
        seat = self.nodes.get(url)
        return seat.name if seat else LOCAL

    @staticmethod
    def limit(backend: str, state: State) -> int:
        custom = state.backends.get(backend)
        return custom.concurrency if custom and custom.concurrency else DEFAULT_CONCURRENCY

    def live(self, backend: str, health: Health, now: float, failed: frozenset[str] | set[str] = frozenset(),
             ) -> list[str]:
        """The model's worker URLs that health does not bench, that can hold the model (weight above
        0) and that have not failed this request."""
        def benched(url: str) -> bool:
            record = health.workers.get(worker_key(backend, url))
            return record is not None and record.effective(now) in UNUSABLE

        return [url for url in self.pools.get(backend, [])
                if url not in failed and not benched(url) and self.weights.get(url, 1.0) > 0]

    def busy(self, state: State, health: Health, now: float) -> frozenset[str]:
        """Local models whose live workers all serve their concurrency limit."""
        out = set()
        for backend in self.pools:
            if not self.on_backend[backend]:
                continue
            live = self.live(backend, health, now)
            if self.on_backend[backend] >= self.limit(backend, state) * max(len(live), 1):
                out.add(backend)
        return frozenset(out)

    def pick(self, backend: str, health: Health, now: float, failed: set[str]) -> str | None:
        """The live worker with the fewest requests in flight for its weight (its measured speed: a
        machine twice as fast takes twice the load; in turn among equals); when health benches them
        all (a last resort), any that has not failed this request; None: none left."""
        live = self.live(backend, health, now, failed) or [
            url for url in self.pools.get(backend, []) if url not in failed and self.weights.get(url, 1.0) > 0]
        if not live:
            return None
        turn = self.turns[backend]
        self.turns[backend] += 1
        ordered = live[turn % len(live):] + live[:turn % len(live)]
        return min(ordered, key=lambda url: (self.on_worker[url] + 1) / self.weights.get(url, 1.0))

    def acquire(self, backend: str, url: str | None) -> Lease:
        self.on_backend[backend] += 1
        if url:
            self.on_worker[url] += 1
        return Lease(backend, url)

    def release(self, lease: Lease) -> None:
        self.on_backend[lease.backend] -= 1
        if lease.url:
            self.on_worker[lease.url] -= 1
