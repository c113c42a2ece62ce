"""MLX workers: one supervised `mlx_lm.server` per local model, recorded under `run/workers/`."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from broke.catalog import LOCAL_PREFIX, load_catalog, local_backend_id
from broke.errors import BrokeError, NotFoundError, StateFileError
from broke.fileio import atomic_write
from broke.local.models import DEMO_ANSWER, DEMO_BACKEND, demo_path, hub_cache, model_path
from broke.paths import ensure_dir, make_private
from broke.procs import ProcessRecord, child_env, end_group, free_port, group_members, is_ours, port_free, spawn
from broke.routing.backends import backend_chain, find_backend
from broke.state.model import State
from broke.state.store import StateStore

READY_TIMEOUT_S = 180.0
LOOPBACK = "127.0.0.1"
Progress = Callable[[str], None]


class WorkerError(BrokeError):
    """A worker could not be started or found."""


@dataclass
class WorkerRecord:
    name: str  # the model name: backend id without "mlx/"
    backend: str
    model_dir: str
    port: int
    pid: int  # the worker's supervisor (its server is in the same process group)
    create_time: float
    log: str
    host: str = LOOPBACK
    tag: str = ""  # the process group's tag (see ProcessRecord.tag)

    @property
    def process(self) -> ProcessRecord:
        return ProcessRecord(self.pid, self.create_time, self.port, self.log, self.tag)

    @property
    def key(self) -> str:
        """The worker's name in health.json: one model can have several workers (a pool)."""
        return f"{self.name}@{self.port}"

    @property
    def exposed(self) -> bool:
        """Listening for other machines (behind a token), not for this machine's gateway."""
        return self.host != LOOPBACK

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _file(home: Path, record: WorkerRecord) -> Path:
    return home / "run" / "workers" / f"{record.name.replace('/', '--')}@{record.port}.json"


def server_record_path(home: Path, key: str) -> Path:
    """Where a worker's supervisor records its model server's PID (`key` is NAME@PORT)."""
    return home / "run" / "workers" / f"{key.replace('/', '--')}.server"


def server_process(home: Path, record: WorkerRecord) -> ProcessRecord | None:
    """The model server the worker's supervisor last started, if it recorded one."""
    try:
        data = json.loads(server_record_path(home, record.key).read_text())
        return ProcessRecord(int(data["pid"]), float(data["create_time"]), record.port, record.log)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise StateFileError(f"{server_record_path(home, record.key)}: not a server record ({exc}); "
                             "remove it") from None


def worker_state(supervisor_alive: bool, server_alive: bool, answers: bool, group_alive: bool) -> str:
    """One word for `worker list`: ready, starting, restarting, orphaned (no supervisor) or dead."""
    if not supervisor_alive:
        return "orphaned" if server_alive or group_alive else "dead"
    if server_alive:
        return "ready" if answers else "starting"
    return "restarting"


@dataclass(frozen=True)
class WorkerView:
    """What `worker list` and `doctor` show of one worker."""

    record: WorkerRecord
    server_pid: int | None
    state: str


def inspect_worker(home: Path, record: WorkerRecord) -> WorkerView:
    supervisor_alive = worker_running(record)
    server = server_process(home, record)
    server_alive = server is not None and is_ours(server)
    group_alive = supervisor_alive or server_alive or bool(group_members(record.process))
    answers = supervisor_alive and server_alive and answering(record)
    return WorkerView(record, server.pid if server else None,
                      worker_state(supervisor_alive, server_alive, answers, group_alive))


def read_workers(home: Path) -> list[WorkerRecord]:
    directory = home / "run" / "workers"
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            records.append(WorkerRecord(**json.loads(path.read_text())))
        except (ValueError, TypeError) as exc:
            raise StateFileError(f"{path}: not a worker record ({exc}); remove it") from None
    return records


def workers_of(home: Path, model: str) -> list[WorkerRecord]:
    """The workers (one, or several forming a pool) of a local model."""
    backend = local_backend_id(model)
    return [w for w in read_workers(home) if w.backend == backend]


def find_worker(home: Path, model: str) -> WorkerRecord | None:
    return next(iter(workers_of(home, model)), None)


def worker_running(record: WorkerRecord) -> bool:
    return is_ours(record.process)


def answering(record: WorkerRecord) -> bool:
    import httpx  # only when probing: read commands such as `status` stay fast

    host = LOOPBACK if record.host in (LOOPBACK, "0.0.0.0", "::") else record.host
    try:
        return httpx.get(f"http://{host}:{record.port}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def routed_local_backends(state: State) -> list[str]:
    """The `mlx/…` backends any slot's chain can reach."""
    catalog = load_catalog()
    found: list[str] = []
    for slot in state.slots:
        for backend_id, _ in backend_chain(slot, state)[0]:
            backend = find_backend(backend_id, state, catalog)
            if backend and backend.provider == "mlx" and backend_id not in found:
                found.append(backend_id)
    return found


def _model_dir(home: Path, state: State, backend_id: str) -> Path:
    backend = find_backend(backend_id, state, load_catalog())
    if backend is None or backend.provider != "mlx":
        raise NotFoundError(f"unknown local model '{backend_id}'; see `broke local models`")
    if backend_id == DEMO_BACKEND and not (demo_path(home) / "config.json").is_file():
        from broke.local.tiny import make_tiny

        make_private(make_tiny(ensure_dir(demo_path(home)), answer=DEMO_ANSWER))
    return model_path(backend, home)


def start_worker(home: Path, model: str, *, port: int | None = None, replica: bool = False,
                 host: str = LOOPBACK, token: str | None = None,
                 progress: Progress = lambda _: None) -> tuple[WorkerRecord, bool]:
    """Start (or find running) a worker of a local model; returns (record, started_now).

    `replica` adds another worker to the model's pool even if one runs. A `host` other than
    loopback (for other machines) requires a `token`.
    """
    backend_id = local_backend_id(model)
    if host != LOOPBACK and not token:
        raise WorkerError("a worker listening beyond loopback needs --token (other machines must present it)")
    for current in workers_of(home, backend_id):
        if not worker_running(current):
            stop_record(home, current)  # ends what is left of its group (an orphaned server) and forgets it
        elif not replica and current.host == host:
            return current, False
    state = StateStore(home).load()
    model_dir = _model_dir(home, state, backend_id)
    port = port or free_port()
    if not port_free(port):
        raise WorkerError(f"port {port} is in use; pick another with --port")
    name = backend_id.removeprefix(LOCAL_PREFIX)  # local_backend_id gave it the prefix
    run = ensure_dir(home / "run")
    ensure_dir(run / "workers")
    log = run / f"worker-{name.replace('/', '--')}@{port}.log"
    cache = hub_cache() if hub_cache().is_dir() else ensure_dir(run / "hf-cache")
    extra = {"BROKE_HOME": str(home), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if token:
        extra["BROKE_WORKER_TOKEN"] = token  # in the environment, not argv: `ps` shows argv to everyone
    progress(f"starting a worker of {backend_id}")
    custom = state.backends.get(backend_id)
    concurrency = custom.concurrency if custom else 0
    process = spawn([sys.executable, "-m", "broke.local.supervise", f"{name}@{port}", str(model_dir), str(port),
                     host, str(concurrency)], child_env(extra), log)
    record = WorkerRecord(name, backend_id, str(model_dir), port, process.pid, process.create_time, str(log),
                          host, process.tag)
    atomic_write(_file(home, record), json.dumps(asdict(record), indent=1).encode())
    deadline = time.monotonic() + READY_TIMEOUT_S
    progress(f"waiting for {backend_id} on port {port}")
    try:
        while not answering(record):
            if not worker_running(record) or time.monotonic() > deadline:
                raise WorkerError(f"the worker of {backend_id} did not become ready; see {log}")
            time.sleep(0.2)
    except BaseException:  # not ready, or Ctrl-C while waiting: leave nothing running
        stop_record(home, record)
        raise
    return record, True


def stop_record(home: Path, record: WorkerRecord) -> str:
    """Stop one worker (its supervisor and server) and forget its record; says what happened."""
    server = server_process(home, record)
    pids = f"pid {record.pid}" + (f", server pid {server.pid}" if server else "")
    said = f"stopped the worker of {record.backend} on port {record.port} ({pids})"
    if not end_group(record.process):  # the server is in its supervisor's group
        said = f"the worker of {record.backend} on port {record.port} was already gone"
    _file(home, record).unlink(missing_ok=True)
    server_record_path(home, record.key).unlink(missing_ok=True)
    return said


def stop_worker(home: Path, model: str) -> list[str]:
    """Stop every worker of a local model (its whole pool on this machine)."""
    records = workers_of(home, model)
    if not records:
        raise NotFoundError(f"no worker for {local_backend_id(model)}; see `broke worker list`")
    return [stop_record(home, record) for record in records]


def stop_all(home: Path) -> list[str]:
    return [stop_record(home, w) for w in read_workers(home)]


def local_bases(home: Path) -> dict[str, list[str]]:
    """backend id -> api_base of each running worker of that model on this machine."""
    bases: dict[str, list[str]] = {}
    for w in read_workers(home):
        if worker_running(w) and not w.exposed:
            bases.setdefault(w.backend, []).append(w.api_base)
    return bases
