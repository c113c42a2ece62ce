"""What this machine can enforce: each profile tried for real with the platform's mechanism."""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from broke.errors import BrokeError
from broke.sandbox.policy import PROFILES
from broke.sandbox.seatbelt import SANDBOX_EXEC

PROBE_TIMEOUT_S = 10
#: The namespaces and mounts each confining profile needs, as bwrap options (run with `true`).
BWRAP_PROBES = {
    "hardened": ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--ro-bind", "/", "/",
                 "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"],
}
BWRAP_PROBES["strict"] = [*BWRAP_PROBES["hardened"], "--unshare-net"]
INSTALL_BWRAP = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"


class SandboxUnavailable(BrokeError):
    """A sandbox profile was asked for that this machine cannot enforce."""


@dataclass(frozen=True)
class Support:
    """The mechanism (`bwrap`, `sandbox-exec` or none), its path, and per profile: enforceable or why not."""

    mechanism: str
    path: str
    profiles: dict[str, str]  # profile -> "" when enforceable, else the reason

    def require(self, profile: str) -> None:
        """Raise SandboxUnavailable unless `profile` can be enforced here."""
        reason = self.profiles.get(profile, f"unknown profile '{profile}'")
        if reason:
            raise SandboxUnavailable(f"sandbox profile '{profile}' cannot be enforced on this machine: {reason}; "
                                     "refusing to run unconfined (`broke sandbox check` says what works here)")


def _run(argv: list[str]) -> str:
    """'' if `argv` ran and exited 0, else its error (the last line it printed)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return ""
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def check(platform: str | None = None) -> Support:
    """Probe this machine: which profiles its sandbox mechanism enforces."""
    platform = platform or sys.platform
    if platform == "darwin":
        found = shutil.which("sandbox-exec") or SANDBOX_EXEC
        failed = _run([found, "-p", "(version 1)(allow default)(deny network*)", "/usr/bin/true"])
        reason = f"sandbox-exec does not work here ({failed})" if failed else ""
        return Support("sandbox-exec", found, {"normal": "", "hardened": reason, "strict": reason})
    if not platform.startswith("linux"):
        why = f"no sandbox mechanism is supported on {platform} (Linux: bubblewrap, macOS: sandbox-exec)"
        return Support("none", "", {"normal": "", **{p: why for p in PROFILES if p != "normal"}})
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        missing = f"bwrap is not installed; {INSTALL_BWRAP}"
        return Support("bwrap", "", {"normal": "", **dict.fromkeys(BWRAP_PROBES, missing)})
    results = {"normal": ""}
    for profile, options in BWRAP_PROBES.items():
        failed = _run([bwrap, *options, "true"])
        results[profile] = (f"bwrap cannot create its namespaces here ({failed}); in a container, allow "
                            "user namespaces or run it with CAP_SYS_ADMIN" if failed else "")
    return Support("bwrap", bwrap, results)
