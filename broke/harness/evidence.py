"""The evidence packet a run is reviewed on: observations (the task, the diff of the working tree since the
run began, the tests and commands the agent ran, policy events) kept apart from inferences (the findings
of earlier reviews). Its hash keys the review cache."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The diff a lane reads at most; the rest is cut, and the packet says so.
DIFF_LIMIT = 60_000
#: Files in the sandbox's home that are the client's own state and caches, not a boundary violation.
CLIENT_STATE = (".claude", ".codex", ".gemini", ".cache", ".npm", ".node-gyp")
GIT_TIMEOUT_S = 60
#: Arguments that name a credential store: a command touching one is a secret access attempt.
SECRET_PATH = re.compile(r"(^|/)(\.ssh|\.aws|\.gnupg|\.netrc|\.git-credentials|\.docker/config\.json|"
                         r"\.config/gh|id_rsa|id_ed25519|\.env(\.\w+)?$)")
NETWORK_TOOLS = ("curl", "wget", "nc")
URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^/@]*@)?([^/:?#]+)", re.IGNORECASE)


@dataclass
class Evidence:
    task: str
    diff: str
    tests: list[dict[str, Any]]
    commands: list[dict[str, Any]]
    policy_events: list[dict[str, Any]]
    client_exit: int
    retry_history: list[dict[str, Any]] = field(default_factory=list)

    def packet(self) -> dict[str, Any]:
        """What a lane reads: observations apart from inferences."""
        observations = {k: v for k, v in asdict(self).items() if k != "retry_history"}
        return {"observations": observations, "inferences": {"earlier_reviews": self.retry_history}}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.packet(), sort_keys=True, default=str).encode()).hexdigest()

    @property
    def tests_failed(self) -> bool:
        """The last test command the agent ran failed."""
        return bool(self.tests) and self.tests[-1].get("exit") != 0


def is_test(command: Mapping[str, Any]) -> bool:
    """Whether a shimmed command ran tests: pytest, `python -m pytest`, `npm test`, `make test|check`, `node --test`."""
    tool, args = command.get("tool"), [str(a) for a in command.get("args") or []]
    if tool == "pytest":
        return True
    if tool in ("python", "python3"):
        return args[:2] == ["-m", "pytest"] or args[:2] == ["-m", "unittest"]
    if tool == "npm":
        return args[:1] in (["test"], ["t"]) or args[:2] == ["run", "test"]
    if tool == "make":
        return any(a in ("test", "check") for a in args)
    return tool == "node" and "--test" in args


def _git(cwd: Path, environ: Mapping[str, str], *args: str, index: Path | None = None) -> str | None:
    git = shutil.which("git", path=environ.get("PATH", os.defpath))
    if git is None:
        return None
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    try:
        done = subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def snapshot_tree(cwd: Path, environ: Mapping[str, str]) -> str | None:
    """A git tree of the working directory as it is now (tracked and untracked files, .gitignore kept),
    written through a private index so that the user's index and branches are untouched; None outside git."""
    if _git(cwd, environ, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    with tempfile.TemporaryDirectory(prefix="broke-harness-") as scratch:
        index = Path(scratch) / "index"
        if _git(cwd, environ, "rev-parse", "--verify", "-q", "HEAD") is not None:
            _git(cwd, environ, "read-tree", "HEAD", index=index)
        if _git(cwd, environ, "add", "-A", ".", index=index) is None:
            return None
        return _git(cwd, environ, "write-tree", index=index)


def tree_diff(cwd: Path, environ: Mapping[str, str], base: str | None) -> str:
    """The diff of the working directory since `base` (a tree from `snapshot_tree`), cut at DIFF_LIMIT."""
    if base is None:
        return "(no diff: the working directory is not in a git repository)"
    now = snapshot_tree(cwd, environ)
    diff = _git(cwd, environ, "diff", "--no-color", "--no-ext-diff", base, now) if now else None
    if diff is None:
        return "(no diff: git could not compare the working directory)"
    if len(diff) > DIFF_LIMIT:
        return diff[:DIFF_LIMIT] + f"\n(diff cut at {DIFF_LIMIT} of {len(diff)} characters)"
    return diff or "(no change)"


def boundary_violations(spill: Path | None) -> list[dict[str, Any]]:
    """Files the agent wrote into its sandbox's home, outside the working directory and the client's own
    state: the sandbox kept them from the real home, in the run's spill directory."""
    if spill is None or not spill.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(spill):
        relative = Path(root).relative_to(spill)
        if relative == Path("."):
            dirs[:] = [d for d in dirs if not d.startswith(CLIENT_STATE)]
            files = [f for f in files if not f.startswith(CLIENT_STATE)]
        found += [{"kind": "boundary_violation", "path": str(Path("~") / relative / name),
                   "kept_at": str(Path(root) / name)} for name in files]
    return sorted(found, key=lambda e: e["path"])


def command_events(commands: Sequence[Mapping[str, Any]], gateway_host: str = "127.0.0.1",
                   broke_home: Path | None = None) -> list[dict[str, Any]]:
    """Policy events the shims saw: secret access attempts (an argument naming a credential store or broke's
    home) and network calls to anywhere but the gateway. Observations: what was asked, and how it ended."""
    found = []
    home = str(broke_home) if broke_home else None
    for command in commands:
        args = [str(a) for a in command.get("args") or []]
        secret = [a for a in args if SECRET_PATH.search(a) or (home and home in a)]
        if secret:
            found.append({"kind": "secret_access_attempt", "tool": command.get("tool"), "arguments": secret,
                          "exit": command.get("exit")})
        if command.get("tool") in NETWORK_TOOLS:
            hosts = [m.group(1) for a in args if (m := URL_HOST.match(a))]
            outside = [h for h in hosts if h not in (gateway_host, "localhost")]
            if outside:
                found.append({"kind": "network", "tool": command.get("tool"), "hosts": outside,
                              "exit": command.get("exit")})
    return found


def gather(task: str, diff: str, commands: Sequence[Mapping[str, Any]], policy_events: list[dict[str, Any]],
           client_exit: int, retry_history: list[dict[str, Any]]) -> Evidence:
    """The packet of a checkpoint, from the ledger's commands."""
    kept = [{k: c.get(k) for k in ("tool", "args", "cwd", "exit", "duration_ms")} for c in commands]
    return Evidence(task, diff, [c for c in kept if is_test(c)], kept, policy_events, client_exit,
                    retry_history)


def given_evidence(task: str, diff: str, tests_output: str, tests_failed: bool) -> Evidence:
    """Evidence given by hand (`broke harness evaluate --task --diff --tests`)."""
    tests = [{"tool": "tests", "output": tests_output[-20_000:], "exit": 1 if tests_failed else 0}]
    return Evidence(task, diff or "(no diff given)", tests if tests_output else [], [], [], 0)
