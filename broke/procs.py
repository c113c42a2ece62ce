"""Processes broke starts: spawn in a new process group, recognise them again, end exactly them."""
from __future__ import annotations

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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(extra: Mapping[str, str], *, outbound: bool = False) -> dict[str, str]:
    """Only what a child needs: the base variables, proxies if it calls out, and `extra`."""
    names = BASE_ENV + (PROXY_ENV if outbound else ())
    return {**{n: os.environ[n] for n in names if n in os.environ}, **extra}


def spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    import subprocess

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=fd,
                                   stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)
    finally:
        os.close(fd)
    return process.pid


def end_group(process: ProcessRecord) -> None:
    """SIGTERM the process group broke started, then SIGKILL what is left after the grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and is_ours(process):
        time.sleep(0.1)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
