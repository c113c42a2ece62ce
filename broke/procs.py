"""Processes broke starts: spawn in a new process group, recognise them again, end exactly them."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broke.paths import FILE_MODE


@dataclass
class ProcessRecord:
    """A process broke started: enough to find it again and to tell a reused PID apart."""

    pid: int
    create_time: float
    port: int
    log: str
    #: A random value in the environment of every process of the group (BROKE_PROCESS_TAG), so its
    #: members are recognised after their leader is gone without trusting a possibly reused group id.
    tag: str = ""


STOP_GRACE_S = 10.0
#: Variables every child keeps (locale, home, temp, certificates); secrets are added per child.
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
#: Outbound proxy settings matter only to the process that calls providers.
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def is_ours(record: ProcessRecord) -> bool:
    """True if the recorded PID is alive and is still the process broke started (not a reused PID)."""
    import psutil

    if record.pid <= 0:
        return False
    try:
        process = psutil.Process(record.pid)
        return abs(process.create_time() - record.create_time) < 0.05 and \
            process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def port_free(port: int) -> bool:
    """True if a server can listen on 127.0.0.1:`port` now.

    The probe sets SO_REUSEADDR as servers do, so connections of a dead server that wait in TIME_WAIT
    (about 60 s) do not count; a listener on any address does (macOS lets such a bind through beside a
    wildcard listener, hence the connect).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as knock:
        knock.settimeout(1.0)
        if knock.connect_ex(("127.0.0.1", port)) != 0:
            return True
        return knock.getsockname() == knock.getpeername()  # connected to itself: nobody listens


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(extra: Mapping[str, str], *, outbound: bool = False) -> dict[str, str]:
    """Only what a child needs: the base variables, proxies if it calls out, and `extra`."""
    names = BASE_ENV + (PROXY_ENV if outbound else ())
    return {**{n: os.environ[n] for n in names if n in os.environ}, **extra}


TAG_ENV = "BROKE_PROCESS_TAG"


def spawn(argv: list[str], env: dict[str, str], log: Path) -> ProcessRecord:
    """Start `argv` in a new process group with output to `log`; returns its record (port 0)."""
    import secrets
    import subprocess

    tag = secrets.token_hex(8)
    env = {**env, TAG_ENV: tag}
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=fd,
                                   stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)
    finally:
        os.close(fd)
    return ProcessRecord(process.pid, create_time(process.pid), 0, str(log), tag)


def group_members(record: ProcessRecord) -> list[int]:
    """PIDs still alive in the process group broke started as `record` (its leader may be gone).

    A member has the leader's PID as its group id, was created no earlier than the leader and, once the
    leader is gone, must carry the record's tag in its environment: the group id alone could be a
    reused PID's.
    """
    import psutil

    if record.pid <= 0:
        return []
    leader_alive = is_ours(record)
    members = []
    for process in psutil.process_iter(["create_time", "status"]):
        try:
            if os.getpgid(process.pid) != record.pid or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        born = process.info["create_time"]
        if born is None or born < record.create_time - 0.05:
            continue
        if leader_alive or (record.tag and _tagged(process, record.tag)):
            members.append(process.pid)
    return members


def _tagged(process, tag: str) -> bool:
    import psutil

    try:
        return process.environ().get(TAG_ENV) == tag
    except psutil.Error:
        return False


def end_group(process: ProcessRecord) -> bool:
    """SIGTERM every process left in the group broke started, SIGKILL what remains after the grace period.

    Returns False if nothing of that group was running.
    """
    if not group_members(process):
        return False
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and group_members(process):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return True
