"""Integrity checks before broke starts the process that holds the keys, or launches an agent (and in
`doctor`): what could run foreign code inside broke's interpreter, and who else can read its secrets.

A finding with `hijack` set could put someone else's code in the process that holds every provider key;
`start` and the launchers refuse on those unless `--force` (which is logged).
"""
from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from broke.errors import BrokeError

#: Variables that make any Python interpreter load code from elsewhere.
HIJACK_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
CHECKOUT = Path(__file__).resolve().parents[1]
LOCKS = ("requirements.lock", "requirements-dev.lock")
OVERRIDES_LOG = "preflight_overrides.log"


@dataclass(frozen=True)
class Finding:
    level: str  # error / warning
    code: str
    subject: str
    message: str  # what is wrong and the fix
    hijack: bool = False


class PreflightRefused(BrokeError):
    """A preflight finding that could hijack broke's process, without --force."""


def env_findings(environ: Mapping[str, str]) -> list[Finding]:
    """PYTHONPATH, PYTHONHOME, PYTHONSTARTUP set: every Python broke runs would load what they name."""
    return [Finding("error", "python_env", name,
                    f"{name} is set ({environ[name]}): it puts other code into broke's Python, the process "
                    f"that holds your provider keys; unset {name} (or pass --force)", hijack=True)
            for name in HIJACK_VARS if environ.get(name, "").strip()]


def _owned(site: Path, names: set[str]) -> set[str]:
    """Which of the .pth files `names` an installed distribution put there (its RECORD lists it)."""
    owned: set[str] = set()
    for record in site.glob("*.dist-info/RECORD"):
        lines = set(record.read_text(encoding="utf-8", errors="replace").splitlines())
        owned |= {name for name in names if any(line.startswith(f"{name},") for line in lines)}
    return owned


def pth_findings(site: Path | None = None) -> list[Finding]:
    """.pth files in the environment's site-packages that no installed package owns: Python runs their
    `import` lines at every start."""
    site = site or Path(sysconfig.get_paths()["purelib"])
    found = {path.name: path for path in sorted(site.glob("*.pth"))} if site.is_dir() else {}
    owned = _owned(site, set(found)) if found else set()
    return [Finding("error", "unexpected_pth", str(path),
                    f"{path} is not part of any installed package, and Python runs it at every start; "
                    f"delete it if you did not put it there (or pass --force)", hijack=True)
            for name, path in found.items() if name not in owned]


def lock_findings(checkout: Path = CHECKOUT) -> list[Finding]:
    """The environment against the checkout's lock files (tools/check_env.py), where broke runs from one."""
    tool = checkout / "tools" / "check_env.py"
    locks = [checkout / name for name in LOCKS if (checkout / name).is_file()]
    if not tool.is_file() or not locks:
        return []
    spec = importlib.util.spec_from_file_location("broke_check_env", tool)
    if spec is None or spec.loader is None:
        return []
    check_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_env)
    have = check_env.installed()
    problems = {lock.name: check_env.differences(check_env.locked(lock), have) for lock in locks}
    if any(not lines for lines in problems.values()):
        return []
    closest = min(problems, key=lambda name: len(problems[name]))
    lines = problems[closest]
    return [Finding("warning", "venv_lock", str(sys.prefix),
                    f"the environment does not match {closest} ({len(lines)} differences, first: {lines[0]}); "
                    "re-run ./install.sh (--dev for a development checkout)")]


def _mode_finding(path: Path, kind: str, wanted: int) -> Finding | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return None
    writable = bool(mode & 0o022)
    what = "writable" if writable else "readable"
    return Finding("error" if writable else "warning", "secret_permissions", str(path),
                   f"{kind} {path} is {what} by other users (mode {mode:o}); chmod {wanted:o} {path}",
                   hijack=writable)


def home_findings(home: Path) -> list[Finding]:
    """broke's home and its .env open to other users (writable by them: they could change what runs)."""
    found = []
    for path, kind, wanted in ((home, "broke's home", 0o700), (home / ".env", "the key file", 0o600)):
        if path.exists():
            finding = _mode_finding(path, kind, wanted)
            if finding:
                found.append(finding)
    return found


def preflight(home: Path, environ: Mapping[str, str], *, lock: bool = True) -> list[Finding]:
    """Every finding; `lock`: also compare the environment with the lock files (slower)."""
    found = env_findings(environ) + pth_findings() + home_findings(home)
    return found + (lock_findings() if lock else [])


def enforce(home: Path, findings: list[Finding], *, command: str, force: bool) -> list[Finding]:
    """Refuse (PreflightRefused) on a hijacking finding unless `force`; a forced run is logged in
    run/preflight_overrides.log. Returns the findings that were overridden."""
    hijacks = [f for f in findings if f.hijack]
    if not hijacks:
        return []
    if not force:
        extra = f" (and {len(hijacks) - 1} more; `broke doctor` lists them)" if len(hijacks) > 1 else ""
        raise PreflightRefused(f"refusing to {command}: {hijacks[0].message}{extra}")
    from broke.paths import FILE_MODE, ensure_dir
    from broke.state.store import utc_now_iso

    line = json.dumps({"time": utc_now_iso(), "command": command,
                       "overridden": [{"code": f.code, "subject": f.subject} for f in hijacks]})
    fd = os.open(ensure_dir(home / "run") / OVERRIDES_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return hijacks


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
