"""Nothing of broke's outlives it: servers die with their supervisor, `stop` ends whole groups, and a
gateway process killed with SIGKILL is noticed and brought back alone. Checked by PID, never by name."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from broke.control.runfiles import GatewayRecord, read_record, write_record
from broke.procs import ProcessRecord, free_port, group_members, spawn
from conftest import run_cli

pytestmark = pytest.mark.timeout(600)


def family(pids: list[int]) -> list[psutil.Process]:
    """The processes and all their descendants, as they are now."""
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        found += [process, *process.children(recursive=True)]
    return found


def assert_all_gone(processes: list[psutil.Process], timeout: float = 15) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert alive == [], f"still running: {[p.pid for p in alive]}"


def sigkill(pid: int) -> None:
    assert pid > 0, f"no process to kill (pid {pid}): os.kill would signal this test's own group"
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid)], timeout=10)


@pytest.fixture
def tiny_worker(broke_home, tmp_path):
    run_cli("local", "make-tiny", str(tmp_path / "tiny"), "--add", "tiny")
    run_cli("worker", "start", "tiny")
    [row] = json.loads(run_cli("worker", "list", "--json").stdout)
    yield row
    run_cli("stop")


def test_worker_list_shows_the_supervisor_and_the_server(tiny_worker):
    assert tiny_worker["state"] == "ready"
    supervisor = psutil.Process(tiny_worker["pid"])
    assert tiny_worker["server_pid"] in [c.pid for c in supervisor.children(recursive=True)]
    table = run_cli("worker", "list").stdout
    assert str(tiny_worker["pid"]) in table and str(tiny_worker["server_pid"]) in table


def test_the_server_dies_with_its_killed_supervisor_and_stop_leaves_nothing(tiny_worker):
    processes = family([tiny_worker["pid"]])
    server = psutil.Process(tiny_worker["server_pid"])
    sigkill(tiny_worker["pid"])
    _, alive = psutil.wait_procs([server], timeout=10)
    assert alive == [], "mlx_lm.server outlived its supervisor"
    [row] = json.loads(run_cli("worker", "list", "--json").stdout)
    assert row["state"] == "dead"
    run_cli("stop")
    assert_all_gone(processes)
    assert json.loads(run_cli("worker", "list", "--json").stdout) == []


SLEEPER = ("import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)")


def test_stop_ends_a_group_whose_leader_is_gone(broke_home, tmp_path):
    """The leader dies by SIGKILL; its child lives on in the group: `stop` is not fooled into 'gone'."""
    leader = spawn([sys.executable, "-c", SLEEPER], {"PATH": os.environ["PATH"]}, tmp_path / "a.log")
    deadline = time.monotonic() + 10
    while len(group_members(leader)) < 2:
        assert time.monotonic() < deadline, "the sleeper's child did not start"
        time.sleep(0.05)
    child = psutil.Process(leader.pid).children()[0]
    write_record(broke_home, GatewayRecord(front=leader, litellm=ProcessRecord(0, 0.0, 0, "")))
    sigkill(leader.pid)
    assert child.is_running()
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["running"] is False
    said = run_cli("stop").stdout
    assert "stopped front" in said and "its leader had died" in said
    assert_all_gone([child])


def test_a_group_id_that_is_not_ours_is_never_signalled(broke_home, tmp_path):
    """A process group led by another program under a recorded PID (reused) is left alone."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        born = psutil.Process(bystander.pid).create_time()
        reused = ProcessRecord(bystander.pid, born - 100.0, 1, "x.log", tag="ours")  # its leader died long ago
        write_record(broke_home, GatewayRecord(front=reused, litellm=reused))
        assert group_members(reused) == []
        run_cli("stop")
        time.sleep(0.3)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def litellm_seen_by_front(record: GatewayRecord) -> str:
    answer = httpx.get(f"{record.base_url}/health", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["litellm"]


def test_killed_gateway_processes_are_noticed_and_brought_back_alone(broke_home, cli_json):
    run_cli("swap", "auto=gemini/gemini-2.5-flash")  # a provider only LiteLLM speaks, with a key: it runs
    with (broke_home / ".env").open("a") as env:
        env.write("\nGEMINI_API_KEY=never-used\n")
    run_cli("start", "--port", str(free_port()), "--wait")
    first = read_record(broke_home)
    try:
        # LiteLLM dies: status and doctor say so; start brings back LiteLLM only.
        sigkill(first.litellm.pid)
        status = json.loads(run_cli("status", "--json").stdout)
        assert status["running"] is False and status["missing"] == ["litellm"]
        assert "degraded" in run_cli("status").stdout
        _, doctor = cli_json("doctor")
        assert any(f["code"] == "gateway_process_down" and "litellm" in f["message"]
                   for f in doctor["findings"]), doctor["findings"]
        run_cli("start")
        second = read_record(broke_home)
        assert second.front.pid == first.front.pid and second.litellm.pid != first.litellm.pid
        assert second.litellm.port == first.litellm.port
        assert litellm_seen_by_front(second) == "up"  # the running front proxy reaches the new LiteLLM

        # The front proxy dies: start brings back the front proxy only, on its port.
        sigkill(second.front.pid)
        assert json.loads(run_cli("status", "--json").stdout)["missing"] == ["front"]
        run_cli("start")
        third = read_record(broke_home)
        assert third.litellm.pid == second.litellm.pid and third.front.pid != second.front.pid
        assert third.front.port == first.front.port and litellm_seen_by_front(third) == "up"
        assert json.loads(run_cli("status", "--json").stdout)["running"] is True
    finally:
        record = read_record(broke_home)
        workers = [w["pid"] for w in json.loads(run_cli("worker", "list", "--json").stdout)]
        processes = family([record.front.pid, record.litellm.pid, *workers]) if record else family(workers)
        run_cli("stop")
    assert_all_gone(processes)


@pytest.mark.parametrize("supervisor, server, answers, group, state", [
    (True, True, True, True, "ready"),
    (True, True, False, True, "starting"),
    (True, False, False, True, "restarting"),
    (False, True, False, True, "orphaned"),
    (False, False, False, True, "orphaned"),  # something else of its group still runs
    (False, False, False, False, "dead"),
])
def test_worker_state_names_an_orphaned_server(supervisor, server, answers, group, state):
    from broke.local.workers import worker_state

    assert worker_state(supervisor, server, answers, group) == state


def test_a_port_left_in_time_wait_is_free_and_a_listened_one_is_not():
    """A server that closed its connections leaves them in TIME_WAIT for about 60 s: the port can be
    listened on again at once (servers set SO_REUSEADDR), so broke must not call it taken."""
    import socket

    from broke.procs import port_free

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not port_free(port)  # listened on
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server closes first: its side of the connection waits in TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    if shutil.which("ss"):  # Linux: the port really is in TIME_WAIT
        assert "TIME-WAIT" in subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True,
                                             text=True).stdout
    assert port_free(port)


def test_a_front_proxy_dead_alone_is_missing_while_workers_run_and_stale_once_they_are_gone():
    """With no LiteLLM started (broke translates everything), a dead front proxy is the only gateway
    process: `broke start` repairs it (workers kept) while a worker runs, and starts afresh otherwise."""
    from broke.control.supervisor import GatewayStatus, ProcessStatus

    front = ProcessStatus("front", ProcessRecord(4242, 1.0, 4000, ""), alive=False)
    litellm = ProcessStatus("litellm", ProcessRecord(0, 0.0, 4001, ""), alive=False)
    record = GatewayRecord(front=front.record, litellm=litellm.record)
    kept = GatewayStatus(record, (front, litellm), workers_alive=True)
    assert not kept.stale and [p.name for p in kept.missing] == ["front"]
    gone = GatewayStatus(record, (front, litellm), workers_alive=False)
    assert gone.stale and gone.missing == ()
