"""A policy as a Seatbelt profile for macOS `sandbox-exec`.

Seatbelt applies the last rule that matches an operation, so the profile allows by default, then denies
what the policy hides or keeps read-only, then allows back what it grants. Untested on a Mac in broke's
CI (Linux); the text is checked rule by rule in tests/test_sandbox.py.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from broke.sandbox.policy import Policy

SANDBOX_EXEC = "/usr/bin/sandbox-exec"
#: Devices a terminal program writes to whatever the profile.
DEVICE_WRITES = ('(literal "/dev/null")', '(literal "/dev/zero")', '(regex #"^/dev/tty")',
                 '(regex #"^/dev/fd/")', '(literal "/dev/dtracehelper")')


def _subpaths(paths: Sequence[Path]) -> str:
    return " ".join(f"(subpath {json.dumps(str(p))})" for p in paths)


def _temp_dirs() -> list[Path]:
    """The temp directories a macOS program writes to (/tmp and the per-user one, by their real paths)."""
    return [Path("/private/tmp"), Path("/private/var/folders")]


def seatbelt_profile(policy: Policy) -> str:
    """The Seatbelt profile text of a hardened or strict policy."""
    writable = [policy.cwd, *policy.writable, *_temp_dirs()]
    rules = [
        "(version 1)",
        "(allow default)",
        f"(deny file-read* file-write* (subpath {json.dumps(str(policy.home))}))",
        f"(allow file-read* (literal {json.dumps(str(policy.home))}))",
        f"(allow file-read* {_subpaths([*policy.readable, *policy.writable, policy.cwd])})",
        "(deny file-write*)",
        f"(allow file-write* {_subpaths(writable)} {' '.join(DEVICE_WRITES)})",
    ]
    if policy.hidden:
        rules.append(f"(deny file-read* file-write* {_subpaths(policy.hidden)})")
    if policy.strict:
        rules += [
            "(deny network*)",
            f'(allow network-outbound (remote ip "localhost:{policy.gateway_port}"))',
        ]
    return "\n".join(rules) + "\n"


def seatbelt_argv(policy: Policy, command: Sequence[str]) -> list[str]:
    """`sandbox-exec -p PROFILE COMMAND…`."""
    return [SANDBOX_EXEC, "-p", seatbelt_profile(policy), *command]
