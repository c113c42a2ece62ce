"""Run a command under a policy with this machine's mechanism, and wait for it."""
from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from broke.sandbox.bridge import Bridge
from broke.sandbox.bwrap import bwrap_argv
from broke.sandbox.policy import Policy
from broke.sandbox.seatbelt import seatbelt_argv
from broke.sandbox.support import Support

#: Signals passed on to the confined command (a terminal's Ctrl-C reaches it directly).
FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def confined_argv(support: Support, policy: Policy, command: Sequence[str], socket: Path | None) -> list[str]:
    """The full command line that runs `command` under `policy`."""
    if support.mechanism == "sandbox-exec":
        return seatbelt_argv(policy, command)
    return bwrap_argv(support.path, policy, command, socket)


@contextlib.contextmanager
def _bridge(support: Support, policy: Policy) -> Iterator[Path | None]:
    """The Unix-socket bridge to the gateway, for a strict policy under bwrap (Seatbelt filters by port)."""
    if policy.gateway_port is None or support.mechanism != "bwrap":
        yield None
        return
    with Bridge(policy.gateway_port) as socket:
        yield socket


def run_confined(support: Support, policy: Policy, command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run `command` confined by `policy` (which `support` must enforce) and return its exit status."""
    support.require(policy.profile)
    with _bridge(support, policy) as socket:
        child = subprocess.Popen(confined_argv(support, policy, command, socket), env=dict(env))
        previous = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s)) for sig in FORWARDED}
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command decides what Ctrl-C does
        try:
            code = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.signal(signal.SIGINT, interrupt)
    return code if code >= 0 else 128 - code
