"""Processes come back by themselves: a worker group whose supervisor is killed is brought back by the
running gateway (bounded, with back-off, said in `status` and the rotation log), `broke start` repairs
one too, and a replica started by hand joins its pool. Real gateway, real MLX workers on CPU; processes
are killed by the PIDs their records hold."""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from broke.local.workers import WorkerRecord, read_workers
from conftest import module_home, run_cli, serving

pytestmark = pytest.mark.timeout(600)
ANSWER = "back again"
#: The goal for a worker: answering again this long after its supervisor was killed, without the user.
WORKER_BACK_S = 15.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """sonnet on one tiny local model (no fallback: while it is down, sonnet is down); auto on a provider
    only LiteLLM speaks, so that the gateway has both its processes (LiteLLM and the front proxy)."""
    root = tmp_path_factory.mktemp("recovery")
    home = root / "home"
    with module_home(home):
        run_cli("local", "make-tiny", str(root / "tiny-r"), "--answer", ANSWER, "--add", "tiny-r")
        run_cli("swap", "sonnet=mlx/tiny-r", "auto=gemini/gemini-2.5-flash")
        with serving() as (_, token):
            yield {"home": home, "root": root, "token": token,
                   "url": json.loads(run_cli("status", "--json").stdout)["base_url"]}


@pytest.fixture
def gw(gateway, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(gateway["home"]))
    return gateway


def ask(gw) -> httpx.Response:
    body = {"model": "sonnet", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(gw["url"] + "/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {gw['token']}"})


def wait_for(check: Callable[[], object], timeout: float, what: str) -> float:
    """Poll `check` until it is true; returns the seconds it took."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout, f"{what} not within {timeout:.0f} s"
        time.sleep(0.1)
    return time.monotonic() - began


def kill_group(record: WorkerRecord) -> None:
    """kill -9 of the worker's supervisor; its model server dies with it."""
    family = [psutil.Process(record.pid), *psutil.Process(record.pid).children(recursive=True)]
    os.kill(record.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []


def the_worker(home: Path, model: str = "mlx/tiny-r") -> WorkerRecord:
    [record] = [w for w in read_workers(home) if w.backend == model]
    return record


def events(home: Path, kind: str) -> list[dict]:
    """The rotation log's events of `kind` (none while nothing was logged)."""
    log = home / "run" / "rotation.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [e for e in (json.loads(line) for line in lines) if e["event"] == kind]


def worker_status(key: str) -> dict:
    return next(w for w in json.loads(run_cli("status", "--json").stdout)["workers"] if w["worker"] == key)


def answers(gw) -> bool:
    answer = ask(gw)
    return answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == ANSWER


def test_a_killed_worker_group_is_brought_back_by_the_gateway(gw):
    assert answers(gw)
    dead = the_worker(gw["home"])
    kill_group(dead)
    seconds = wait_for(lambda: answers(gw), WORKER_BACK_S, "the slot answering again")
    back = the_worker(gw["home"])
    assert (back.port, back.key) == (dead.port, dead.key) and back.pid != dead.pid  # on its port: LiteLLM's too
    # The watcher logs the restart once it sees the worker answer, which may be just after the slot did.
    wait_for(lambda: events(gw["home"], "worker_restarted"), 5, "the restart in the rotation log")
    [restarted] = events(gw["home"], "worker_restarted")
    assert (restarted["worker"], restarted["by"], restarted["pid"]) == (dead.key, "gateway", back.pid)
    row = worker_status(dead.key)
    assert row["state"] == "ready" and row["restarts"]["count"] == 1 and not row["restarts"]["gave_up"]
    assert "1" in [line.split("│")[5].strip() for line in run_cli("status").stdout.splitlines()
                   if dead.key in line][0]
    print(f"sonnet answered again {seconds:.1f} s after kill -9 of its worker's supervisor")


def test_a_replica_started_by_hand_takes_requests_without_a_restart(gw):
    front = json.loads(run_cli("status", "--json").stdout)["processes"][0]["pid"]
    first = the_worker(gw["home"])
    run_cli("worker", "start", "tiny-r", "--replica")
    [replica] = [w for w in read_workers(gw["home"]) if w.pid != first.pid]

    def served(record: WorkerRecord) -> int:
        return Path(record.log).read_text().count("POST /v1/chat/completions")

    before = served(replica)
    for _ in range(8):  # the pool takes turns, once the gateway has seen the new record
        assert answers(gw)
        time.sleep(0.2)
    assert served(replica) > before
    assert json.loads(run_cli("status", "--json").stdout)["processes"][0]["pid"] == front  # no restart


def test_workers_stopped_by_hand_stay_stopped_and_leave_their_pool(gw):
    """Both workers stopped, one started anew on another port: requests go to it, none to the old ones."""
    stopped = read_workers(gw["home"])
    began = time.time()
    assert "stopped" in run_cli("worker", "stop", "tiny-r").stdout
    run_cli("worker", "start", "tiny-r")
    fresh = the_worker(gw["home"])
    assert fresh.pid not in {w.pid for w in stopped}
    time.sleep(2)  # several looks of the gateway
    assert [w.pid for w in read_workers(gw["home"])] == [fresh.pid]
    assert not [e for e in events(gw["home"], "worker_restarted") if e["ts"] >= began]
    for _ in range(4):
        assert answers(gw)


def test_the_gateway_gives_up_says_so_and_start_tries_again(gw):
    """A worker that cannot come back (its model is no longer registered) is tried MAX_TRIES times with
    back-off (1 + 2 + 4 + 8 s), then given up; `broke start` tries it again once the model is back."""
    from broke.gateway.watch import MAX_TRIES

    run_cli("local", "make-tiny", str(gw["root"] / "tiny-x"), "--add", "tiny-x")
    run_cli("worker", "start", "tiny-x")
    dead = the_worker(gw["home"], "mlx/tiny-x")
    run_cli("backend", "remove", "mlx/tiny-x")
    kill_group(dead)
    wait_for(lambda: [e for e in events(gw["home"], "worker_gave_up") if e["worker"] == dead.key], 40,
             "giving up")
    failed = [e for e in events(gw["home"], "worker_restart_failed") if e["worker"] == dead.key]
    assert len(failed) == MAX_TRIES and all("unknown local model" in e["error"] for e in failed)
    gaps = [b["ts"] - a["ts"] for a, b in zip(failed, failed[1:], strict=False)]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps  # back-off
    row = worker_status(dead.key)
    assert row["state"] == "dead" and row["restarts"]["gave_up"] and row["restarts"]["failed"] == MAX_TRIES
    assert "gave up restarting the worker " + dead.key in " ".join(run_cli("status").stdout.split())
    assert answers(gw)  # the other workers never stopped serving

    run_cli("local", "add", str(gw["root"] / "tiny-x"), "--name", "tiny-x")
    said = run_cli("start").stdout
    assert f"worker {dead.key} brought back" in " ".join(said.split())
    back = the_worker(gw["home"], "mlx/tiny-x")
    assert back.port == dead.port and back.pid != dead.pid
    row = worker_status(dead.key)
    assert row["state"] == "ready" and not row["restarts"]["gave_up"]
    run_cli("worker", "stop", "tiny-x")


def test_start_brings_back_a_killed_worker_group_with_the_front_proxy(gw):
    """The front proxy and a worker's supervisor both killed: nothing watches, `broke start` repairs both."""
    front = psutil.Process(json.loads(run_cli("status", "--json").stdout)["processes"][0]["pid"])
    dead = the_worker(gw["home"])
    os.kill(front.pid, signal.SIGKILL)
    psutil.wait_procs([front], timeout=10)
    kill_group(dead)
    assert worker_status(dead.key)["state"] == "dead"
    said = run_cli("start").stdout
    assert f"worker {dead.key} brought back" in " ".join(said.split())
    back = the_worker(gw["home"])
    assert back.port == dead.port and back.pid != dead.pid
    assert [e["by"] for e in events(gw["home"], "worker_restarted") if e["pid"] == back.pid] == ["start"]
    assert answers(gw)


def test_start_brings_a_killed_gateway_back_on_its_port(gw):
    """Front proxy and LiteLLM both killed while the worker runs: `broke start` brings them back on their
    ports (the one clients were given, not the default) and keeps the worker; with the worker gone too
    (a stale record) it starts afresh, on the same port."""
    worker = the_worker(gw["home"])
    for stop_worker in (False, True):
        status = json.loads(run_cli("status", "--json").stdout)
        for pid in [p["pid"] for p in status["processes"] if p["pid"] > 0]:
            process = psutil.Process(pid)
            os.kill(pid, signal.SIGKILL)
            psutil.wait_procs([process], timeout=10)
        if stop_worker:
            run_cli("worker", "stop", "tiny-r")
        assert json.loads(run_cli("status", "--json").stdout)["stale"] is stop_worker
        run_cli("start")
        assert json.loads(run_cli("status", "--json").stdout)["base_url"] == gw["url"]
        assert answers(gw)
        if not stop_worker:
            assert the_worker(gw["home"]).pid == worker.pid  # kept, not restarted
