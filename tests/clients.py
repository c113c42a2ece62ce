"""The real clients for end-to-end tests: Claude Code, Codex and Gemini CLI from npm, and `broke` run as a
user runs it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The real clients the end-to-end tests install (bump both together; the cache is keyed by them).
CLAUDE_CODE_VERSION = "2.1.197"
CODEX_VERSION = "0.169.0"
GEMINI_CLI_VERSION = "0.61.0"
CLIENT_TIMEOUT_S = 120
BROKE = Path(sys.executable).parent / "broke"
#: Provider settings a user may have lying around; launches must not be fooled by them.
STALE = {"ANTHROPIC_API_KEY": "sk-ant-stale-secret", "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
         "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-openai-stale-secret",
         "CLAUDE_CODE_USE_BEDROCK": "1", "CLAUDE_CODE_USE_VERTEX": "1"}


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "broke-test-clients"


def install_clients() -> Path:
    """The bin directory of Claude Code and Codex installed from npm, cached by version across runs."""
    return _install(f"claude-code-{CLAUDE_CODE_VERSION}_codex-{CODEX_VERSION}", {
        "claude": f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}", "codex": f"@openai/codex@{CODEX_VERSION}"})


def install_gemini() -> Path:
    """The bin directory of Gemini CLI installed from npm, cached by version across runs."""
    return _install(f"gemini-cli-{GEMINI_CLI_VERSION}", {"gemini": f"@google/gemini-cli@{GEMINI_CLI_VERSION}"})


def _install(name: str, packages: dict[str, str]) -> Path:
    """npm packages (program -> package@version) installed once under the cache's `name`."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not on PATH: cannot install {', '.join(packages)} for the end-to-end tests")
    target = _cache_root() / name
    bin_dir = target / "node_modules" / ".bin"
    if not all((bin_dir / program).exists() for program in packages):
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
        done = subprocess.run(
            [npm, "install", "--prefix", str(scratch), "--no-audit", "--no-fund", *packages.values()],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
        try:
            scratch.rename(target)  # all or nothing: a half install is never reused
        except OSError:  # another run installed it first
            shutil.rmtree(scratch, ignore_errors=True)
    return bin_dir


def diagnosis(home: Path) -> str:
    logs = []
    for name in ("gateway.log", "litellm.log"):
        path = home / "run" / name
        if path.exists():
            logs.append(f"--- {name} (tail) ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(logs)


def run_broke(e2e, tmp_path: Path, bin_dir: Path, *args: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`broke ARGS…` as the user runs it: stale provider settings in the environment (and `env`),
    the client's own home in tmp_path, stdin closed; run in `cwd` (default: tmp_path)."""
    env = {**os.environ, **STALE, "BROKE_HOME": str(e2e["home"]), "BROKE_PORT": str(e2e["port"]),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
           "HOME": str(tmp_path / "client-home"), "CODEX_HOME": str(tmp_path / "codex-home"),
           "BROKE_TEST_UNRELATED": "kept", **(env or {})}
    for name in ("client-home", "codex-home"):
        (tmp_path / name).mkdir(exist_ok=True)
    try:
        return subprocess.run([str(BROKE), *args], env=env, cwd=cwd or tmp_path, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`broke {' '.join(args)}` ran over {CLIENT_TIMEOUT_S}s\nstdout: {exc.stdout}\n"
                    f"stderr: {exc.stderr}\n{diagnosis(e2e['home'])}")


def assert_answered(e2e, done: subprocess.CompletedProcess, answer: str) -> None:
    assert done.returncode == 0 and answer in done.stdout, (
        f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr[-4000:]}\n{diagnosis(e2e['home'])}")
