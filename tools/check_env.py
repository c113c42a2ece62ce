"""Check that a virtual environment holds exactly what a lock file pins.

Run with the venv's interpreter: ``.venv/bin/python tools/check_env.py requirements.lock``.
Standard library only (plus the copy of ``packaging`` vendored in pip), so it runs
before anything else is importable. Exit 0 when every locked requirement that
applies to this platform is installed at its pinned version and nothing else is
installed; exit 1 with one line per difference otherwise.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

Marker: type[_Marker] | None
try:
    from pip._vendor.packaging.markers import Marker as _Marker

    Marker = _Marker
except ImportError:  # pragma: no cover - pip without vendored packaging
    Marker = None

# Installed by venv itself or by install.sh outside the lock.
NOT_LOCKED = {"pip", "setuptools", "broke"}
REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\#]*))?")


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """Name -> version for every requirement in ``lock`` whose marker holds here."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = REQUIREMENT.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        if marker and marker.strip() and Marker is not None and not Marker(marker.strip()).evaluate():
            continue
        pins[normalise(name)] = version
    return pins


def installed() -> dict[str, str]:
    """Name -> version of every distribution importable by this interpreter."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[normalise(name)] = dist.version
    return found


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One line per way ``have`` differs from ``pins``."""
    lines = []
    for name in sorted(pins):
        if name not in have:
            lines.append(f"missing: {name}=={pins[name]} is locked but not installed")
        elif have[name] != pins[name]:
            lines.append(f"version: {name} {have[name]} is installed, the lock pins {pins[name]}")
    for name in sorted(set(have) - set(pins) - NOT_LOCKED):
        lines.append(f"unlocked: {name} {have[name]} is installed but not in the lock")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_env.py LOCKFILE", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    problems = differences(locked(lock), installed())
    for line in problems:
        print(f"check_env: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
