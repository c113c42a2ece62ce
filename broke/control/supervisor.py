"""Start, stop and inspect the gateway's processes: LiteLLM on an internal port, the front proxy on 4000.

Each runs in its own process group; `stop` ends every process left in each recorded group (its leader
recognised by PID and creation time, the rest by the group's tag), never a reused PID. If one of the
two dies while the other runs, `status` and `doctor` say so and `start` brings back only that one;
`start` also brings back, on its port, a worker whose supervisor died (as the running front proxy does).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from broke.catalog import load_catalog, local_backend_id
from broke.control.litellm_config import deployments, render
from broke.control.runfiles import (
    DEFAULT_PORT,
    GatewayRecord,
    key_ref,
    master_key,
    new_master_key,
    read_record,
    record_path,
    run_dir,
    write_record,
)
from broke.errors import BrokeError
from broke.fileio import atomic_write
from broke.health import HealthTransitions
from broke.keys import provider_env
from broke.procs import (
    ProcessRecord,
    child_env,
    end_group,
    free_port,
    is_ours,
    port_free,
    spawn,
)
from broke.routing.transport import litellm_needed
from broke.state.store import StateStore

LITELLM_START_TIMEOUT_S = 120.0
FRONT_START_TIMEOUT_S = 30.0


log = logging.getLogger("broke.gateway")


class GatewayError(BrokeError):
    """The gateway could not be started or stopped as asked."""


Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    record: ProcessRecord
    alive: bool

    @property
    def started(self) -> bool:
        """False for LiteLLM while no request has needed it yet."""
        return self.record.pid > 0


@dataclass(frozen=True)
class GatewayStatus:
    record: GatewayRecord | None
    processes: tuple[ProcessStatus, ...]
    workers_alive: bool = False  # some recorded local worker still runs

    @property
    def running(self) -> bool:
        started = [p for p in self.processes if p.started]
        return bool(started) and all(p.alive for p in started)

    @property
    def stale(self) -> bool:
        """Nothing of the gateway runs: no process of its own and no local worker (a front proxy that died
        alone, LiteLLM never started, is missing, not stale: its workers are kept)."""
        return self.record is not None and not any(p.alive for p in self.processes) and not self.workers_alive

    @property
    def missing(self) -> tuple[ProcessStatus, ...]:
        """Processes that died while another of the gateway still runs (a degraded gateway)."""
        if self.stale:
            return ()
        return tuple(p for p in self.processes if p.started and not p.alive)


def status(home: Path) -> GatewayStatus:
    record = read_record(home)
    if record is None:
        return GatewayStatus(None, ())
    from broke.local.workers import read_workers, worker_running

    return GatewayStatus(record, tuple(
        ProcessStatus(name, proc, is_ours(proc)) for name, proc in (("front", record.front),
                                                                   ("litellm", record.litellm))
    ), any(worker_running(w) for w in read_workers(home)))


def _wait_healthy(url: str, record: ProcessRecord, name: str, timeout_s: float,
                  progress: Progress) -> None:
    import httpx  # only when probing: read commands such as `status` stay fast

    progress(f"waiting for {name} on 127.0.0.1:{record.port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_ours(record):
            raise GatewayError(f"{name} exited while starting; see {record.log}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise GatewayError(f"{name} did not answer its health check within {timeout_s:.0f}s; see {record.log}")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise GatewayError(f"{name} must be a positive number, got '{raw}'")
    return value


def start(home: Path, *, port: int | None = None, first_byte_timeout_s: float | None = None,
          wait_litellm: bool = False, progress: Progress = lambda _: None) -> tuple[GatewayRecord, bool]:
    """Start the gateway unless it runs; returns (record, started_now).

    The front proxy answers as soon as it is up. LiteLLM starts only if some slot's backends need
    translation for their clients' API, in the background unless `wait_litellm`.
    """
    from broke.control.tokens import CLIENT_TOKEN_ENV, MASTER_KEY_ENV, fixed_token

    for variable in (CLIENT_TOKEN_ENV, MASTER_KEY_ENV):  # refused before anything starts, not after the workers
        fixed_token(home, variable)
    current = status(home)
    if current.running and current.record is not None:
        _revive_workers(home, progress)
        return current.record, False
    if current.missing:
        _revive_workers(home, progress)
        return _repair(home, current, progress), True
    if current.record is not None:
        port = port or current.record.front.port  # the port its clients were given
        stop(home, keep_workers=True)  # stale: end what is left of its groups, clean the record
        _revive_workers(home, progress)  # its recorded workers come back on their ports
    port = port or int(_env_number("BROKE_PORT", DEFAULT_PORT))
    if not port_free(port):
        raise GatewayError(f"port {port} on 127.0.0.1 is in use; pick another with `broke start --port N`")
    first_byte_timeout_s = first_byte_timeout_s or _env_number("BROKE_FIRST_BYTE_TIMEOUT", 120)
    body_limit_bytes = int(_env_number("BROKE_BODY_LIMIT_MB", 32) * 1024 * 1024)

    from broke.local import workers
    from broke.local.demo import route_fresh_home_to_demo

    if route_fresh_home_to_demo(home):
        progress("no provider keys and no local models: routing every slot to the offline demo model")
    state = StateStore(home).load()
    env = provider_env(home / ".env")
    HealthTransitions(home).keys_reloaded()  # keys are read afresh: their old failures are forgotten

    for backend_id in workers.routed_local_backends(state):
        try:
            workers.start_worker(home, backend_id, progress=progress)
        except BrokeError as exc:  # one missing model must not keep the rest of the gateway down
            progress(f"skipping {backend_id}: {exc}")
            log.warning("skipping %s: %s", backend_id, exc)
    bases = workers.local_bases(home)
    items = deployments(state, load_catalog(), env, bases)
    pools = {b: list(urls) for b, urls in bases.items()}
    for node in state.nodes.values():  # workers on other machines join the pool (the proxy follows the state)
        if node.token_env and node.token_env not in env:
            continue  # cannot be reached from here, as in the LiteLLM config
        pools.setdefault(local_backend_id(node.model), []).append(node.url)
    key_vars = sorted({d.key_env for d in items if d.key_env} |
                      {n.token_env for n in state.nodes.values() if n.token_env and n.token_env in env})
    run = run_dir(home)
    config_path = run / "litellm_config.json"
    atomic_write(config_path, json.dumps(render(items, request_timeout_s=600), indent=1).encode())
    master = new_master_key(home)

    litellm = ProcessRecord(0, 0.0, free_port(), str(run / "litellm.log"))
    front = ProcessRecord(0, 0.0, port, str(run / "gateway.log"))
    record = GatewayRecord(front=front, litellm=litellm, deployments=sorted({d.name for d in items}),
                           key_refs={k: key_ref(env[k]) for k in key_vars},
                           first_byte_timeout_s=first_byte_timeout_s, body_limit_bytes=body_limit_bytes,
                           local_max_tokens=int(_env_number("BROKE_LOCAL_MAX_TOKENS", 4096)),
                           direct_workers=pools,
                           native_forwarding=os.environ.get("BROKE_NATIVE", "1") != "0",
                           started_at=time.time())
    try:
        write_record(home, record)
        _start_front(home, record, env, progress)
        _wait_front(record, progress)
        if not record.native_forwarding or litellm_needed(state, load_catalog(), pools, env):
            _start_litellm(home, record, env, master, progress)  # requests that need it wait for it
            if wait_litellm:
                _wait_litellm(record, progress)
    except BaseException:
        stop(home)
        raise
    return record, True


def ensure_litellm(home: Path, *, wait: bool = False) -> ProcessRecord:
    """Start LiteLLM for the running gateway if it is not running (a request needs it); with `wait`,
    until it answers.

    Called by the front proxy and `benchmark-sequential --backend`; the record lock keeps two
    callers from starting two copies.
    """
    from filelock import FileLock

    from broke.paths import FILE_MODE

    with FileLock(str(record_path(home)) + ".lock", mode=FILE_MODE, timeout=30):
        record = read_record(home)
        if record is None:
            raise GatewayError("no gateway record; start the gateway with `broke start`")
        if not is_ours(record.litellm):
            end_group(record.litellm)
            if not port_free(record.litellm.port):
                raise GatewayError(f"LiteLLM's port {record.litellm.port} is taken by another program; "
                                   "`broke restart`")
            _start_litellm(home, record, provider_env(home / ".env"), master_key(home), lambda _: None)
    if wait:
        _wait_litellm(record, lambda _: None)
    return record.litellm


def _record_keys(record: GatewayRecord, env: dict[str, str]) -> dict[str, str]:
    """The provider keys (and node tokens) the record names, from `env`."""
    return {k: env[k] for k in record.key_refs if k in env}


def _start_litellm(home: Path, record: GatewayRecord, env: dict[str, str], master: str,
                   progress: Progress) -> None:
    """Spawn LiteLLM on the record's port with the rendered config and the record's keys; record its PID."""
    progress("starting LiteLLM")
    litellm_env = child_env({**_record_keys(record, env), "LITELLM_MASTER_KEY": master,
                             "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"},
                            outbound=True)
    config_path = run_dir(home) / "litellm_config.json"
    started = spawn([str(Path(sys.executable).parent / "litellm"), "--config", str(config_path),
                     "--host", "127.0.0.1", "--port", str(record.litellm.port)], litellm_env,
                    Path(record.litellm.log))
    record.litellm = replace(started, port=record.litellm.port)
    write_record(home, record)


def _shared_env(env: dict[str, str]) -> dict[str, str]:
    """BROKE_REDIS_URL, when set: the front proxy shares cooldowns and rate windows through it."""
    from broke.shared import URL_ENV

    return {URL_ENV: env[URL_ENV]} if env.get(URL_ENV) else {}


def _start_front(home: Path, record: GatewayRecord, env: dict[str, str], progress: Progress) -> None:
    """Spawn the front proxy (it reads the record) and record its PID.

    It holds the provider keys of the record (environment only, never argv or a file): it sends
    native requests itself.
    """
    progress("starting the front proxy")
    started = spawn([sys.executable, "-m", "broke.gateway.serve"],
                    child_env({**_record_keys(record, env), **_shared_env(env), "BROKE_HOME": str(home)},
                              outbound=True),
                    Path(record.front.log))
    record.front = replace(started, port=record.front.port)
    write_record(home, record)


def _wait_litellm(record: GatewayRecord, progress: Progress) -> None:
    _wait_healthy(f"http://127.0.0.1:{record.litellm.port}/health/liveliness", record.litellm, "LiteLLM",
                  LITELLM_START_TIMEOUT_S, progress)


def _wait_front(record: GatewayRecord, progress: Progress) -> None:
    _wait_healthy(f"http://127.0.0.1:{record.front.port}/health", record.front, "the front proxy",
                  FRONT_START_TIMEOUT_S, progress)


def _repair(home: Path, current: GatewayStatus, progress: Progress) -> GatewayRecord:
    """Bring back the gateway processes that died, on their recorded ports; leave the running ones be.

    LiteLLM comes back with the same config and master key, so the running front proxy keeps working.
    """
    record = current.record
    assert record is not None
    for process in current.missing:
        end_group(process.record)  # whatever its group left behind
        if not port_free(process.record.port):
            raise GatewayError(f"{process.name} is down and its port {process.record.port} is taken by another "
                               "program; `broke restart` starts the gateway afresh")
    names = {p.name for p in current.missing}
    env = provider_env(home / ".env")
    if "litellm" in names:
        _start_litellm(home, record, env, master_key(home), progress)
    if "front" in names:
        _start_front(home, record, env, progress)
    if "litellm" in names:
        _wait_litellm(record, progress)
    if "front" in names:
        _wait_front(record, progress)
    return record


def _revive_workers(home: Path, progress: Progress) -> None:
    """Bring back, on their ports, the recorded workers of the running gateway whose supervisor died
    (said in the rotation log); one that does not come back keeps the others coming."""
    from broke.local import workers

    for record in workers.read_workers(home):
        if workers.worker_running(record):
            continue
        try:
            workers.revive(home, record.key, by="start", progress=progress)
        except BrokeError as exc:
            progress(f"the worker {record.key} did not come back: {exc}")
            log.warning("the worker %s did not come back: %s", record.key, exc)


def stop(home: Path, *, keep_workers: bool = False) -> list[str]:
    """Stop the recorded processes that are still ours; returns what was done, one line each.
    `keep_workers` (a restart): this machine's workers go on (replicas and workers for other
    machines included), and the next start finds them running."""
    current = status(home)
    done = []
    for process in current.processes:
        if end_group(process.record):
            left = "" if process.alive else "; its leader had died, the rest of its group had not"
            done.append(f"stopped {process.name} (pid {process.record.pid}{left})")
        elif process.record.pid:
            done.append(f"{process.name} (pid {process.record.pid}) was already gone")
    record_path(home).unlink(missing_ok=True)
    (home / "run" / "litellm_master_key").unlink(missing_ok=True)
    if keep_workers:
        return done
    from broke.local.workers import stop_all

    return done + stop_all(home)
