"""MLX workers: one supervised `mlx_lm.server` per local model, recorded under `run/workers/`."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from broke.catalog import LOCAL_PREFIX, load_catalog, local_backend_id
from broke.errors import BrokeError, NotFoundError, StateFileError
from broke.fileio import atomic_write
from broke.health import HealthTransitions, rotation_log
from broke.local.models import DEMO_ANSWER, DEMO_BACKEND, demo_path, hub_cache, model_path
from broke.paths import FILE_MODE, ensure_dir, make_private
from broke.procs import ProcessRecord, child_env, end_group, free_port, group_members, is_ours, port_free, spawn
from broke.routing.backends import backend_chain, find_backend
from broke.state.model import State
from broke.state.store import StateStore

if TYPE_CHECKING:
    from filelock import FileLock

READY_TIMEOUT_S = 180.0
LOOPBACK = "127.0.0.1"
Progress = Callable[[str], None]


class WorkerError(BrokeError):
    """A worker could not be started or found."""


#: Set for a worker's supervisor that announces it (DNS-SD) once it answers.
ADVERTISE_ENV = "BROKE_WORKER_ADVERTISE"


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
                 host: str = LOOPBACK, token: str | None = None, advertise: bool = False,
                 progress: Progress = lambda _: None) -> tuple[WorkerRecord, bool]:
    """Start (or find running) a worker of a local model; returns (record, started_now).

    `replica` adds another worker to the model's pool even if one runs. A `host` other than
    loopback (for other machines) requires a `token`.
    """
    backend_id = local_backend_id(model)
    if host != LOOPBACK and not token:
        raise WorkerError("a worker listening beyond loopback needs --token (other machines must present it)")
    if advertise and host == LOOPBACK:
        raise WorkerError("--advertise announces a worker to other machines: give it --host and --token")
    for current in workers_of(home, backend_id):
        if not worker_running(current):
            stop_record(home, current)  # ends what is left of its group (an orphaned server) and forgets it
        elif not replica and current.host == host:
            return current, False
    with _lock(home):
        record = _spawn(home, backend_id, port or free_port(), host, token, progress, advertise)
    try:
        wait_ready(record, progress)
    except BaseException:  # not ready, or Ctrl-C while waiting: leave nothing running
        stop_record(home, record)
        raise
    return record, True


def _lock(home: Path) -> FileLock:
    """Held while a worker record is written or forgotten (`start`, the gateway and `stop` may race)."""
    from filelock import FileLock

    return FileLock(str(ensure_dir(home / "run" / "workers") / ".lock"), mode=FILE_MODE, timeout=60)


def _spawn(home: Path, backend_id: str, port: int, host: str, token: str | None,
           progress: Progress, advertise: bool = False) -> WorkerRecord:
    """Start a worker's supervisor on `port` and record it (not waiting for it to answer)."""
    state = StateStore(home).load()
    model_dir = _model_dir(home, state, backend_id)
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
    if advertise:
        extra[ADVERTISE_ENV] = "1"  # the supervisor announces it on the LAN once it answers
    progress(f"starting a worker of {backend_id}")
    custom = state.backends.get(backend_id)
    concurrency = custom.concurrency if custom else 0
    process = spawn([sys.executable, "-m", "broke.local.supervise", f"{name}@{port}", str(model_dir), str(port),
                     host, str(concurrency)], child_env(extra), log)
    record = WorkerRecord(name, backend_id, str(model_dir), port, process.pid, process.create_time, str(log),
                          host, process.tag)
    atomic_write(_file(home, record), json.dumps(asdict(record), indent=1).encode())
    progress(f"waiting for {backend_id} on port {port}")
    return record


def readiness(record: WorkerRecord) -> bool | None:
    """True once the worker answers, False while it loads, None if its supervisor is gone."""
    if answering(record):
        return True
    return False if worker_running(record) else None


def wait_ready(record: WorkerRecord, progress: Progress = lambda _: None) -> None:
    """Wait until a worker just started answers; WorkerError if it dies or takes over READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not (ready := readiness(record)):
        if ready is None or time.monotonic() > deadline:
            raise WorkerError(f"the worker of {record.backend} did not become ready; see {record.log}")
        time.sleep(0.2)


#: Rotation-log events of a worker whose supervisor had died (`by`: the gateway or `broke start`).
RESTARTED, RESTART_FAILED, GAVE_UP = "worker_restarted", "worker_restart_failed", "worker_gave_up"


def respawn(home: Path, key: str) -> WorkerRecord | None:
    """Start again, on its port, the recorded worker `key` (NAME@PORT) whose supervisor died; None if
    it runs or is no longer recorded (brought back or stopped meanwhile). It sits out (health) until
    it answers; the caller waits for that. A worker for other machines needs its token: an error."""
    with _lock(home):
        record = next((w for w in read_workers(home) if w.key == key), None)
        if record is None or worker_running(record):
            return None
        if record.exposed:
            raise WorkerError(f"the worker of {record.backend} on {record.host}:{record.port} needs its token: "
                              f"`broke worker start {record.name} --host {record.host} --token …`")
        end_group(record.process)  # whatever its group left behind
        server_record_path(home, key).unlink(missing_ok=True)
        HealthTransitions(home).worker_restarting(key)
        return _spawn(home, record.backend, record.port, record.host, None, lambda _: None)


def revive(home: Path, key: str, *, by: str, progress: Progress = lambda _: None) -> WorkerRecord | None:
    """`respawn` and wait until it answers, said in the rotation log; a failed try ends the new group
    and leaves the record (dead) for the next one."""
    started = time.monotonic()
    events = rotation_log(home)
    try:
        record = respawn(home, key)
        if record is None:
            return None
        progress(f"restarting the worker {key}")
        try:
            wait_ready(record)
        except BaseException:
            end_group(record.process)
            raise
    except BrokeError as exc:
        events.write(event=RESTART_FAILED, worker=key, by=by, error=str(exc))
        raise
    events.write(event=RESTARTED, worker=key, backend=record.backend, pid=record.pid, by=by,
                 seconds=round(time.monotonic() - started, 2))
    return record


@dataclass(frozen=True)
class Restarts:
    """What was done for one worker whose supervisor died (by the gateway or `broke start`)."""

    count: int = 0  # times it was brought back
    failed: int = 0  # tries that did not bring it back
    error: str = ""  # why the last try failed, if it did
    gave_up: bool = False  # the gateway stopped trying, and nothing brought it back since


def restart_history(home: Path, since: float) -> dict[str, Restarts]:
    """Worker (NAME@PORT) -> its restarts since `since` (epoch seconds), from the rotation log."""
    history: dict[str, Restarts] = {}
    for event in rotation_log(home).read(limit=5000):
        kind, key = event.get("event"), str(event.get("worker", ""))
        if kind not in (RESTARTED, RESTART_FAILED, GAVE_UP) or event.get("ts", 0) < since:
            continue
        seen = history.get(key, Restarts())
        if kind == RESTARTED:
            seen = Restarts(seen.count + 1, seen.failed)
        elif kind == RESTART_FAILED:
            seen = Restarts(seen.count, seen.failed + 1, str(event.get("error", "")), seen.gave_up)
        else:
            seen = Restarts(seen.count, seen.failed, seen.error, gave_up=True)
        history[key] = seen
    return history

def stop_record(home: Path, record: WorkerRecord) -> str:
    """Stop one worker (its supervisor and server) and forget its record; says what happened."""
    server = server_process(home, record)
    pids = f"pid {record.pid}" + (f", server pid {server.pid}" if server else "")
    said = f"stopped the worker of {record.backend} on port {record.port} ({pids})"
    with _lock(home):
        if not end_group(record.process):  # the server is in its supervisor's group
            said = f"the worker of {record.backend} on port {record.port} was already gone"
        recorded = next((w for w in read_workers(home) if w.key == record.key), None)
        if recorded is None or recorded.pid == record.pid:  # not a worker brought back on its port meanwhile
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
