"""A harness shim (stdlib only, run as `python -IS`): installed under a tool's name in a run's bin
directory, which leads PATH. It runs the real tool (the next one of that name on PATH) unchanged, with
the same arguments, streams and environment, then appends one line to the run's command ledger
(tool, arguments with credentials masked, working directory, exit code, duration) and exits as it did."""
import json
import os
import re
import signal
import sys
import time

LEDGER_ENV = "BROKE_RUN_COMMANDS"
RUN_ENV = "BROKE_RUN_ID"
SECRET_ARG = re.compile(r"(authorization|api[-_]?key|token|password|secret|cookie)", re.IGNORECASE)
SECRET_QUERY = re.compile(r"((?:key|token|secret|password|sig)=)[^&\s]+", re.IGNORECASE)
URL_USER = re.compile(r"(://)[^/@\s]+@")


def mask(args):
    """The arguments as recorded: a credential (`Authorization: …`, `--api-key=…`, the value after
    `--token`) replaced by ***, and the secrets of URLs (user info, key= and token= parameters) cut."""
    out, hide_next = [], False
    for arg in args:
        if hide_next:
            arg, hide_next = "***", False
        elif SECRET_ARG.search(arg):
            head = re.match(r"[^:=]*[:=]\s*", arg)
            if head:
                arg = head.group(0) + "***"
            elif arg.startswith("-"):
                hide_next = True
        out.append(URL_USER.sub(r"\1***@", SECRET_QUERY.sub(r"\1***", arg)))
    return out


def real_tool(name, own_dir):
    """The first `name` on PATH that is not this shim directory's."""
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry or os.path.realpath(entry) == own_dir:
            continue
        candidate = os.path.join(entry, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def record(event):
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(event, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # the tool's result matters more than its record


def main():
    name = os.path.basename(sys.argv[0])
    own_dir = os.path.realpath(os.path.dirname(os.path.abspath(sys.argv[0])))
    args = sys.argv[1:]
    tool = real_tool(name, own_dir)
    if tool is None:
        sys.stderr.write(f"{name}: command not found\n")
        return 127
    started, wall = time.perf_counter(), time.time()
    try:  # posix_spawn, not subprocess (whose import costs more than most tools' start); the signals
        # Python ignores (SIGPIPE, SIGXFSZ) back to their defaults, as a shell would start the tool
        pid = os.posix_spawn(tool, [name, *args], os.environ, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as exc:
        sys.stderr.write(f"{name}: {exc.strerror}\n")
        return 126
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the tool itself
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    status = code if code >= 0 else 128 - code  # as a shell reports a tool killed by a signal
    record({"ts": round(wall, 3), "kind": "command", "tool": name, "args": mask(args), "cwd": os.getcwd(),
            "exit": status, "signal": -code if code < 0 else None,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1), "run": os.environ.get(RUN_ENV, "")})
    return status


if __name__ == "__main__":
    sys.exit(main())
