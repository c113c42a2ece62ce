"""MLX workers: one supervised `mlx_lm.server` per local model, recorded under `run/workers/`."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from broke.catalog import load_catalog
from broke.errors import BrokeError, NotFoundError, StateFileError
from broke.fileio import atomic_write
from broke.local.models import DEMO_ANSWER, DEMO_BACKEND, demo_path, hub_cache, model_path
from broke.paths import ensure_dir
from broke.procs import ProcessRecord, child_env, create_time, end_group, free_port, is_ours, port_free, spawn
from broke.resolver import backend_chain, find_backend
from broke.state.model import State
from broke.state.store import StateStore

READY_TIMEOUT_S = 180.0
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

    @property
    def process(self) -> ProcessRecord:
        return ProcessRecord(self.pid, self.create_time, self.port, self.log)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def backend_of(model: str) -> str:
    """`mlx/NAME` for a model given as NAME or as its backend id."""
    return model if model.startswith("mlx/") else f"mlx/{model}"


def _file(home: Path, name: str) -> Path:
    return home / "run" / "workers" / (name.replace("/", "--") + ".json")


def read_workers(home: Path) -> list[WorkerRecord]:
    directory = home / "run" / "workers"
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            records.append(WorkerRecord(**json.loads(path.read_text())))
        except (ValueError, TypeError) as exc:
            raise StateFileError(f"{path}: not a worker record ({exc}); remove it") from None
    return records


def find_worker(home: Path, model: str) -> WorkerRecord | None:
    backend = backend_of(model)
    return next((w for w in read_workers(home) if w.backend == backend), None)


def worker_running(record: WorkerRecord) -> bool:
    return is_ours(record.process)


def answering(record: WorkerRecord) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{record.port}/health", timeout=2.0).status_code == 200
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

        make_tiny(ensure_dir(demo_path(home)), answer=DEMO_ANSWER)
    return model_path(backend, home)


def start_worker(home: Path, model: str, *, port: int | None = None,
                 progress: Progress = lambda _: None) -> tuple[WorkerRecord, bool]:
    """Start (or find running) the worker of a local model; returns (record, started_now)."""
    backend_id = backend_of(model)
    current = find_worker(home, backend_id)
    if current and worker_running(current):
        return current, False
    if current:
        _file(home, current.name).unlink(missing_ok=True)
    state = StateStore(home).load()
    model_dir = _model_dir(home, state, backend_id)
    port = port or free_port()
    if not port_free(port):
        raise WorkerError(f"port {port} on 127.0.0.1 is in use; pick another with --port")
    name = backend_id[len("mlx/"):]
    run = ensure_dir(home / "run")
    ensure_dir(run / "workers")
    log = run / f"worker-{name.replace('/', '--')}.log"
    cache = hub_cache() if hub_cache().is_dir() else ensure_dir(run / "hf-cache")
    env = child_env({"BROKE_HOME": str(home), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                     "PYTHONUNBUFFERED": "1"})
    progress(f"starting the worker of {backend_id}")
    pid = spawn([sys.executable, "-m", "broke.local.supervise", name, str(model_dir), str(port)], env, log)
    record = WorkerRecord(name, backend_id, str(model_dir), port, pid, create_time(pid), str(log))
    atomic_write(_file(home, name), json.dumps(asdict(record), indent=1).encode())
    deadline = time.monotonic() + READY_TIMEOUT_S
    progress(f"waiting for {backend_id} on 127.0.0.1:{port}")
    while not answering(record):
        if not worker_running(record) or time.monotonic() > deadline:
            stop_worker(home, backend_id)
            raise WorkerError(f"the worker of {backend_id} did not become ready; see {log}")
        time.sleep(0.2)
    return record, True


def stop_worker(home: Path, model: str) -> str:
    record = find_worker(home, model)
    if record is None:
        raise NotFoundError(f"no worker for {backend_of(model)}; see `broke worker list`")
    said = f"stopped the worker of {record.backend} (pid {record.pid})"
    if worker_running(record):
        end_group(record.process)
    else:
        said = f"the worker of {record.backend} was already gone"
    _file(home, record.name).unlink(missing_ok=True)
    return said


def stop_all(home: Path) -> list[str]:
    return [stop_worker(home, w.backend) for w in read_workers(home)]


def local_bases(home: Path) -> dict[str, str]:
    """backend id -> api_base of every running worker."""
    return {w.backend: w.api_base for w in read_workers(home) if worker_running(w)}
