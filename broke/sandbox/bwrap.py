"""A policy as a bubblewrap (bwrap) command line, Linux."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from broke.sandbox.policy import PRIVATE_TMP, Policy

#: Where a strict sandbox finds the bridge's Unix socket and the forwarder, inside its private temp.
INNER_DIR = f"{PRIVATE_TMP}/.broke-sandbox"
INNER_SOCKET = f"{INNER_DIR}/gateway.sock"
INNER_FORWARDER = f"{INNER_DIR}/forward.py"
FORWARDER = Path(__file__).with_name("forward.py")


def _python() -> tuple[str, Path]:
    """The interpreter that runs the forwarder inside (stdlib only, so any Python 3) and its prefix."""
    return str(Path(sys.executable).resolve()), Path(sys.base_prefix).resolve()


def _visible(policy: Policy, path: Path) -> bool:
    """Whether `path` of the host would be seen inside: it exists, and is not under a tmpfs of the
    sandbox unless a bind brings it back."""
    covered = path.is_relative_to(policy.home) or path.is_relative_to(PRIVATE_TMP)
    inside_bound = any(path.is_relative_to(p) for p in (policy.cwd, *policy.writable, *policy.readable))
    return os.path.lexists(path) and (not covered or inside_bound)


def _hidden_args(policy: Policy) -> list[str]:
    """An empty tmpfs over each hidden path, /dev/null over each host socket, where they would be seen."""
    out = []
    for path in policy.hidden:
        if _visible(policy, path):
            out += ["--tmpfs", str(path)]
    for path in policy.sockets:
        hidden = any(path.is_relative_to(h) for h in policy.hidden)
        if _visible(policy, path) and not hidden and not path.is_symlink():
            out += ["--ro-bind", "/dev/null", str(path)]
    return out


def bwrap_argv(bwrap: str, policy: Policy, command: Sequence[str], socket: Path | None = None) -> list[str]:
    """The bwrap command line running `command` under `policy`; a strict policy needs the bridge's
    `socket`, and runs the command behind the forwarder that listens on the gateway's port inside."""
    home = ["--bind", str(policy.home_dir)] if policy.home_dir else ["--tmpfs"]
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", PRIVATE_TMP, *home, str(policy.home)]
    binds = [("--ro-bind", path) for path in policy.readable] + [("--bind", path) for path in policy.writable]
    # a path granted inside a hidden one (a harness run's directory in broke's home) is bound after the hiding
    late = [(how, p) for how, p in binds if any(p.is_relative_to(h) for h in policy.hidden)]
    for how, path in [b for b in binds if b not in late]:
        argv += [how, str(path), str(path)]
    argv += ["--bind", str(policy.cwd), str(policy.cwd)]
    argv += _hidden_args(policy)
    for how, path in late:
        argv += [how, str(path), str(path)]
    if policy.strict:
        if socket is None:
            raise ValueError("a strict policy needs the bridge's socket")
        python, prefix = _python()
        if prefix.is_relative_to(policy.home):
            argv += ["--ro-bind", str(prefix), str(prefix)]
        argv += ["--unshare-net", "--bind", str(socket), INNER_SOCKET,
                 "--ro-bind", str(FORWARDER), INNER_FORWARDER]
        command = [python, "-I", "-S", INNER_FORWARDER, str(policy.gateway_port), INNER_SOCKET, "--", *command]
    return [*argv, "--chdir", str(policy.cwd), "--", *command]
