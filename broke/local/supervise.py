"""One worker's supervisor process: runs `mlx_lm.server` for a model and restarts it when it dies.

Started by `broke worker start` as `python -m broke.local.supervise NAME MODEL_DIR PORT [HOST [CONCURRENCY]]`
(CONCURRENCY > 0: the server's decode batch, `--decode-concurrency`), in
its own process group (the server is its child, in the same group), so stopping the group stops
both. The server runs under `broke.lifeline` with a pipe from here as its standard input, so it
exits by itself if this supervisor dies, even by SIGKILL; its PID is recorded next to the worker's
record (`run/workers/NAME.server`) for `worker list`. Worker health goes to `health.json`
(`workers.NAME`): healthy once the server answers, cooldown (with no end time) from its exit until it
answers again. With a HOST other than loopback the server listens on a loopback port
and a token check (`broke.local.token_front`, token from $BROKE_WORKER_TOKEN) takes HOST:PORT.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from broke.fileio import atomic_write
from broke.health import HealthTransitions
from broke.local.discovery import Announcer
from broke.local.workers import ADVERTISE_ENV, server_record_path
from broke.paths import broke_home
from broke.procs import create_time, free_port

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
READY_TIMEOUT_S = 180.0


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} broke-worker: {message}", flush=True)


def wait_ready(server: subprocess.Popen, port: int) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def record_server(name: str, pid: int) -> None:
    """Write the running server's PID and creation time beside the worker record."""
    import psutil

    try:
        started = create_time(pid)
    except psutil.Error:  # it died at once; the restart loop reports that
        started = 0.0
    atomic_write(server_record_path(broke_home(), name), json.dumps({"pid": pid, "create_time": started}).encode())


def announce(name: str, host: str, port: int) -> Announcer | None:
    """Announce the worker on the LAN (DNS-SD); a LAN that refuses multicast costs the announcement only."""
    from broke.machine import hardware, machine_label

    try:
        announcer = Announcer(name, name.rpartition("@")[0] or name, host, port, machine_label(hardware()))
    except Exception as exc:  # zeroconf's own errors, or an OSError from a socket
        log(f"could not announce the worker on the LAN: {type(exc).__name__}: {exc}")
        return None
    log(f"announced on the LAN as {announcer.info.name}")
    return announcer


def main(name: str, model_dir: str, port: int, host: str = "127.0.0.1", concurrency: int = 0) -> int:
    health = HealthTransitions(broke_home())
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    exposed = host not in ("127.0.0.1", "localhost")
    server_port = free_port() if exposed else port
    lifeline = [sys.executable, "-m", "broke.lifeline"]
    argv = lifeline + ["mlx_lm.server", "--model", model_dir, "--host", "127.0.0.1", "--port", str(server_port)]
    if concurrency > 0:  # what the gateway lets one worker serve at once is what it batches
        argv += ["--decode-concurrency", str(concurrency), "--prompt-concurrency", str(min(concurrency, 8))]
    front = None
    if exposed:
        model = name.rpartition("@")[0] or name  # NAME@PORT -> NAME
        front = subprocess.Popen(lifeline + ["broke.local.token_front", host, str(port), str(server_port), model],
                                 stdin=subprocess.PIPE)
    server_env = {k: v for k, v in os.environ.items() if k != "BROKE_WORKER_TOKEN"}
    restarts = 0
    announcer = None
    while not stopping:
        log(f"starting mlx_lm.server for {name} on {host}:{port}" + (" (token required)" if exposed else ""))
        server = subprocess.Popen(argv, stdin=subprocess.PIPE, env=server_env)
        record_server(name, server.pid)
        started = time.monotonic()
        if wait_ready(server, server_port):
            health.worker_ready(name)
            log("ready")
            if exposed and announcer is None and os.environ.get(ADVERTISE_ENV) == "1":
                announcer = announce(name, host, port)
        while not stopping and server.poll() is None:
            time.sleep(0.2)
        if stopping:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            health.worker_gone(name)
            break
        if server.stdin is not None:
            server.stdin.close()
        if time.monotonic() - started > 60:
            restarts = 0  # it ran a good while: start the back-off afresh
        delay = BACKOFF_S[min(restarts, len(BACKOFF_S) - 1)]
        restarts += 1
        log(f"mlx_lm.server exited with {server.returncode}; restarting in {delay:.0f}s")
        health.worker_restarting(name)  # it sits out until it answers again, however long loading takes
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    if announcer is not None:
        announcer.close()
    if front is not None:
        front.terminate()
        front.wait(timeout=10)
    log("stopped")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5, 6):
        sys.exit("usage: python -m broke.local.supervise NAME MODEL_DIR PORT [HOST [CONCURRENCY]]")
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), host, concurrency))
