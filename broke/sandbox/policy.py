"""What each sandbox profile lets a command see, write and reach: a `Policy`, mechanism-free."""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from broke.errors import InvalidInputError, one_of

PROFILES = ("normal", "hardened", "strict")
#: The clients whose own configuration directories a sandbox keeps (`client_paths`).
CLIENTS = ("claude", "codex", "gemini")
DEFAULT_PROFILE = "normal"
#: Where the private temp directory is, inside the sandbox.
PRIVATE_TMP = "/tmp"
#: The kernel's list of Unix sockets (Linux): a socket file stays connectable on a read-only mount.
UNIX_SOCKETS = Path("/proc/net/unix")
#: Variable names that hold credentials of some kind; removed inside a sandbox unless broke set them.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|COOKIE|SESSION|^AWS_|^AZURE_|^GOOGLE_APPLICATION",
                         re.IGNORECASE)


@dataclass(frozen=True)
class Policy:
    """One confined run: read-only system, `writable` paths read-write, `readable` paths read-only, the
    rest of `home` (the user's) hidden (an empty home, kept in `home_dir` if set), `hidden` paths invisible,
    `sockets` (the host's Unix sockets, such as docker.sock) unconnectable; `gateway_port` set: only it is
    reachable."""

    profile: str
    home: Path
    cwd: Path
    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    gateway_port: int | None = None
    sockets: tuple[Path, ...] = ()
    #: Where writes to the sandbox's home land (a harness run keeps them to find boundary violations);
    #: None: an empty tmpfs, gone with the sandbox.
    home_dir: Path | None = None

    @property
    def strict(self) -> bool:
        return self.gateway_port is not None


def check_profile(name: str) -> str:
    return one_of("sandbox profile", name, PROFILES)


def check_client(name: str) -> str:
    return one_of("client", name, CLIENTS)


def client_paths(client: str, home: Path, environ: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    """(directories, files) that a client keeps its own configuration, sessions and caches in."""
    if client == "claude":
        config = environ.get("CLAUDE_CONFIG_DIR")
        return [Path(config) if config else home / ".claude"], [home / ".claude.json"]
    if client == "codex":
        return [Path(environ.get("CODEX_HOME") or home / ".codex")], []
    if client == "gemini":
        return [home / ".gemini"], []
    return [], []


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def program_paths(program: str, environ: Mapping[str, str], home: Path) -> list[Path]:
    """Read-only paths a program installed where the sandbox empties (under `home`, or under the host's
    /tmp) needs: its PATH directory and its package (an npm package's whole node_modules tree, a Python
    virtual environment's whole directory)."""
    found = shutil.which(program, path=environ.get("PATH", os.defpath))
    if found is None:
        return []
    paths = []
    for path in (Path(found).absolute().parent, Path(os.path.realpath(found))):
        if not (_inside(path, home) or _inside(path, Path(PRIVATE_TMP))):
            continue
        parts = path.parts
        if "node_modules" in parts:
            path = Path(*parts[:parts.index("node_modules") + 1])
        directory = path if path.is_dir() else path.parent
        if directory.name == "bin" and (directory.parent / "pyvenv.cfg").is_file():
            directory = directory.parent
        paths.append(directory)
    return paths


def unix_sockets(table: Path = UNIX_SOCKETS) -> list[Path]:
    """The paths of the Unix sockets bound on this host (none where the kernel does not list them)."""
    try:
        lines = table.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    except OSError:
        return []
    paths = {fields[7] for fields in (line.split(None, 7) for line in lines) if len(fields) == 8}
    return sorted(Path(p) for p in paths if p.startswith("/"))


def build_policy(profile: str, *, client: str, program: str, cwd: Path, broke_home: Path,
                 environ: Mapping[str, str], gateway_port: int) -> Policy:
    """The policy of `profile` for `program` (a client's or any command's) run in `cwd`.

    Refuses a working directory that would expose the user's whole home or broke's own."""
    check_profile(profile)
    home = Path(environ.get("HOME") or Path.home()).resolve()
    cwd, broke_home = cwd.resolve(), broke_home.resolve()
    if profile == "normal":
        return Policy(profile, home, cwd)
    if _inside(home, cwd):
        raise InvalidInputError(f"the working directory {cwd} holds your whole home, which the sandbox would "
                                "make writable; cd into a project directory first")
    if _inside(cwd, broke_home):
        raise InvalidInputError(f"the working directory {cwd} is inside broke's home {broke_home}, which a "
                                "sandbox keeps invisible; cd into a project directory first")
    dirs, files = client_paths(client, home, environ)
    for directory in dirs:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # so what the client saves outlives the run
    writable = [*dirs, *(f for f in files if f.is_file())]
    readable = program_paths(program, environ, home)
    return Policy(profile, home, cwd, tuple(writable), tuple(dict.fromkeys(readable)), (broke_home,),
                  gateway_port if profile == "strict" else None, tuple(unix_sockets()))


def sandbox_env(env: Mapping[str, str], kept: Iterable[str], secrets: Iterable[str]) -> dict[str, str]:
    """The environment inside a sandbox: `env` without broke's own variables, without any variable named
    like a credential (but those in `kept`, which broke set) and without any whose value holds one of
    `secrets` (the provider keys); its temp directory the private one."""
    keep = set(kept)
    values = [s for s in secrets if len(s) >= 8]
    out = {}
    for name, value in env.items():
        if name in keep:
            out[name] = value
        elif name.startswith("BROKE_") or SECRET_NAME.search(name) or any(s in value for s in values):
            continue
        else:
            out[name] = value
    out["TMPDIR"] = PRIVATE_TMP
    return out
