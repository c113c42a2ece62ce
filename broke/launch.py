"""Launch Claude Code, Codex or Gemini CLI through the gateway: the argv, a sanitised environment, an audit line.

Everything here but `prepare` and `exec_client` is pure: it takes the caller's environment as a
mapping, so what a client would get can be computed and tested without starting anything.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from broke.control.tokens import CLIENT_TOKEN_ENV, MASTER_KEY_ENV
from broke.errors import BrokeError, UsageProblem, one_of

#: Prefixes and names of caller variables that would point a client somewhere other than broke.
STALE_PREFIXES = ("ANTHROPIC_", "OPENAI_", "GOOGLE_GEMINI_", "GOOGLE_GENAI_", "GOOGLE_VERTEX_")
#: broke's own fixed tokens are the gateway's too: a client gets its token in its own variable only.
#: Google's project, credentials and auth choices would send Gemini CLI to Vertex AI or Code Assist.
STALE_NAMES = frozenset({"CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", CLIENT_TOKEN_ENV, MASTER_KEY_ENV,
                         "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT_ID", "GOOGLE_CLOUD_LOCATION",
                         "GOOGLE_APPLICATION_CREDENTIALS", "GEMINI_CLI_USE_COMPUTE_ADC", "GEMINI_DEFAULT_AUTH_TYPE",
                         "GEMINI_API_KEY_AUTH_MECHANISM", "CLOUD_SHELL", "CODE_ASSIST_ENDPOINT"})
#: Proxy variables (matched case-insensitively) are kept, but loopback must bypass them.
PROXY_NAMES = frozenset({"http_proxy", "https_proxy", "all_proxy"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
#: Provider keys are the gateway's, never a client's: every *_API_KEY (and its pool, *_API_KEY_2 …)
#: and every key variable of a provider or custom backend (`key_variables`) with its pool is removed.
API_KEY_NAME = re.compile(r"^[A-Za-z0-9_]*_API_KEY(?:_\d+)?$")
CODEX_KEY_ENV = "BROKE_CODEX_KEY"
CODEX_DEFAULT_MODEL = "gpt-5-codex"
#: The pseudo-client of `broke sandbox exec`: any command, given the variables of every client API.
COMMAND = "command"
AUDIT_LOG = "launch_audit.log"
#: Gemini CLI's system settings for a launch (its highest-precedence file), kept in its own directory
#: (~/.gemini, which a sandbox lets it read; Gemini CLI skips it if a parent directory is writable by
#: others): API-key auth, whose base URL is GOOGLE_GEMINI_BASE_URL, even when the user's own settings
#: chose a Google login (its "gateway" auth, picked from the environment alone, fails its own
#: validation in headless mode); no usage statistics, telemetry or update checks.
GEMINI_SETTINGS = "broke-system-settings.json"
GEMINI_AUTH = "gemini-api-key"
GEMINI_SYSTEM_SETTINGS = {"security": {"auth": {"selectedType": GEMINI_AUTH}},
                          "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False},
                          "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False}}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Client:
    name: str
    binary: str
    install: str


CLIENTS = {
    "claude": Client("claude", "claude", "npm i -g @anthropic-ai/claude-code"),
    "codex": Client("codex", "codex", "npm i -g @openai/codex"),
    "gemini": Client("gemini", "gemini", "npm i -g @google/gemini-cli"),
}


class ClientNotFoundError(BrokeError):
    """The client's program is not on PATH."""


@dataclass(frozen=True)
class LaunchPlan:
    """What a launch runs: argv, the whole environment, and what broke set and removed in it."""

    client: str
    profile: str | None
    base_url: str
    argv: list[str]
    env: dict[str, str]
    set: dict[str, str]
    removed: list[str]
    token: str

    def masked(self, name: str) -> str:
        """The value broke sets for `name`, with the token cut to its first 8 characters."""
        value = self.set[name]
        return mask(value) if value == self.token else value


def mask(secret: str) -> str:
    return secret[:8] + "…"


def client_named(name: str) -> Client:
    if name == COMMAND:
        return Client(COMMAND, "", "")
    return CLIENTS[one_of("client", name, CLIENTS)]


def token_owner(home: Path, profile: str | None) -> str:
    """The TokenStore owner for a launch: "client", or "profile:P" for a profile that exists."""
    if not profile:
        return "client"
    from broke.presets import profiles

    profiles(home).get(profile)  # NotFoundError for an unknown profile
    return f"profile:{profile}"


def key_variables(home: Path | None = None) -> frozenset[str]:
    """The key variables of every provider in the catalog and, given a home, of its custom backends."""
    from broke.catalog import load_catalog

    names = {p.key_env for p in load_catalog().providers.values() if p.key_env}
    if home is not None:
        from broke.state.store import StateStore

        # an unreadable state: the catalog's and the *_API_KEY names still go
        with contextlib.suppress(BrokeError):
            names |= {b.key_env for b in StateStore(home).load().backends.values() if b.key_env}
    return frozenset(names)


def is_key(name: str, key_vars: frozenset[str]) -> bool:
    if API_KEY_NAME.match(name):
        return True
    base, _, number = name.rpartition("_")
    return name in key_vars or (number.isdigit() and base in key_vars)


def _is_stale(name: str, key_vars: frozenset[str] = frozenset()) -> bool:
    return name.startswith(STALE_PREFIXES) or name in STALE_NAMES or is_key(name, key_vars)


def _no_proxy_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """NO_PROXY and no_proxy with the loopback hosts added, if any proxy variable is set."""
    if not any(name.lower() in PROXY_NAMES and value for name, value in environ.items()):
        return {}
    out = {}
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h.strip() for h in environ.get(name, "").split(",") if h.strip()]
        out[name] = ",".join(hosts + [h for h in LOOPBACK_HOSTS if h not in hosts])
    return out


def client_vars(client: str, base_url: str, token: str, settings: Path | None = None) -> dict[str, str]:
    """The variables broke sets for `client` (for any command: those of the Anthropic, OpenAI and Google APIs)."""
    if client == COMMAND:
        return {"ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_AUTH_TOKEN": token,
                "OPENAI_BASE_URL": f"{base_url}/v1", "OPENAI_API_KEY": token, **_gemini_vars(base_url, token)}
    if client_named(client).name == "gemini":
        return {**_gemini_vars(base_url, token),
                **({"GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(settings)} if settings else {})}
    if client_named(client).name == "claude":
        return {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_AUTH_TOKEN": token,
            "ANTHROPIC_MODEL": "sonnet",
            "ANTHROPIC_DEFAULT_OPUS_MODEL": "opus",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "sonnet",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "haiku",
            "CLAUDE_CODE_SUBAGENT_MODEL": "subagent",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
    return {CODEX_KEY_ENV: token}


def _gemini_vars(base_url: str, token: str) -> dict[str, str]:
    """Gemini CLI pointed at broke: Google's API at the gateway, the token as its API key (x-goog-api-key)."""
    return {"GOOGLE_GEMINI_BASE_URL": base_url, "GEMINI_API_KEY": token, "GEMINI_DEFAULT_AUTH_TYPE": GEMINI_AUTH}


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of printable text is a TOML basic string


def _passes_model(args: Sequence[str]) -> bool:
    """Whether the user's arguments choose a model themselves (`-m`, `--model`), before any `--`."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--model" or arg.startswith(("--model=", "-m")):
            return True
    return False


def client_argv(client: str, base_url: str, args: Sequence[str]) -> list[str]:
    """The command line: the user's arguments untouched, after what points the client at broke."""
    if client == COMMAND:
        return list(args)
    if client_named(client).name in ("claude", "gemini"):
        return [client_named(client).binary, *args]
    provider = ",".join(f"{k}={_toml_string(v)}" for k, v in (
        ("name", "broke"), ("base_url", f"{base_url}/v1"), ("env_key", CODEX_KEY_ENV), ("wire_api", "responses"),
        ("model_catalog_url", f"{base_url}/v1/models")))  # Codex's model discovery: the lanes it may pick
    argv = ["codex", "-c", 'model_provider="broke"', "-c", f"model_providers.broke={{{provider}}}"]
    if not _passes_model(args):
        argv += ["-m", CODEX_DEFAULT_MODEL]
    return [*argv, *args]


def build_plan(client: str, base_url: str, token: str, args: Sequence[str],
               environ: Mapping[str, str], profile: str | None = None,
               key_vars: frozenset[str] | None = None, settings: Path | None = None) -> LaunchPlan:
    """The launch of `client` from a caller whose environment is `environ`; `key_vars`: the
    provider key variables to remove besides *_API_KEY (default: the catalog's); `settings`: Gemini
    CLI's system settings file."""
    keys = key_variables() if key_vars is None else key_vars
    setting = {**_no_proxy_vars(environ), **client_vars(client, base_url, token, settings)}
    env = {k: v for k, v in environ.items() if not _is_stale(k, keys)}
    env.update(setting)
    removed = sorted(k for k in environ if _is_stale(k, keys) and k not in setting)
    return LaunchPlan(client, profile, base_url, client_argv(client, base_url, args), env, setting,
                      removed, token)


def shell_lines(plan: LaunchPlan) -> list[str]:
    """`unset K` and `export K=V` lines (real values, shell-quoted) that make a shell's environment the plan's."""
    lines = [f"unset {name}" for name in plan.removed]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in plan.set.items()]
    if plan.client == "codex":
        lines.append(f"# then run: {shlex.join(plan.argv)}")
    return lines


def require_client(client: str, environ: Mapping[str, str], args: Sequence[str] = ()) -> None:
    """Raise a ClientNotFoundError naming the install command if the client (for COMMAND: the command,
    args[0]) is not on the caller's PATH."""
    spec = client_named(client)
    path = environ.get("PATH", os.defpath)
    if client == COMMAND:
        if not args:
            raise UsageProblem("no command given; usage: broke sandbox exec PROFILE -- COMMAND [ARGS]...")
        if shutil.which(args[0], path=path) is None:
            raise ClientNotFoundError(f"`{args[0]}` is not a program on PATH")
    elif shutil.which(spec.binary, path=path) is None:
        raise ClientNotFoundError(f"`{spec.binary}` is not on PATH; install it with `{spec.install}`")


def gemini_settings(environ: Mapping[str, str]) -> Path:
    """Write Gemini CLI's system settings for launches (0600) and return their path."""
    from broke.fileio import atomic_write

    path = Path(environ.get("HOME") or Path.home()) / ".gemini" / GEMINI_SETTINGS
    atomic_write(path, json.dumps(GEMINI_SYSTEM_SETTINGS, indent=2).encode())
    return path


def planned_base_url(home: Path) -> str:
    """The running gateway's base URL, else the one `broke start` would use."""
    from broke.control import supervisor
    from broke.control.runfiles import DEFAULT_PORT

    record = supervisor.status(home).record
    if record is not None:
        return record.base_url
    return f"http://127.0.0.1:{os.environ.get('BROKE_PORT') or DEFAULT_PORT}"


def preview(home: Path, client: str, profile: str | None, environ: Mapping[str, str]) -> LaunchPlan:
    """The plan a launch would use now, without starting anything (for `broke launch-env`)."""
    from broke.control.runfiles import TokenStore

    client_named(client)
    token = TokenStore(home).token_for(token_owner(home, profile))
    settings = gemini_settings(environ) if client == "gemini" else None
    return build_plan(client, planned_base_url(home), token, [], environ, profile, key_variables(home), settings)


def prepare(home: Path, client: str, args: Sequence[str], *, profile: str | None,
            environ: Mapping[str, str], progress: Progress) -> tuple[LaunchPlan, bool]:
    """Check the client is installed, start the gateway if needed; returns (plan, gateway_started)."""
    from broke.control import supervisor
    from broke.control.runfiles import TokenStore

    require_client(client, environ, args)
    owner = token_owner(home, profile)
    record, started = supervisor.start(home, progress=progress)
    token = TokenStore(home).token_for(owner)
    settings = gemini_settings(environ) if client == "gemini" else None
    return build_plan(client, record.base_url, token, args, environ, profile, key_variables(home),
                      settings), started


def audit(home: Path, plan: LaunchPlan, sandbox: str = "normal") -> None:
    """Append one JSON line to run/launch_audit.log (0600): who launched what; names only, never values."""
    from broke.control.runfiles import run_dir
    from broke.paths import FILE_MODE
    from broke.state.store import StateStore, utc_now_iso

    line = {
        "time": utc_now_iso(),
        "client": plan.client,
        "profile": plan.profile,
        "sandbox": sandbox,
        "generation": StateStore(home).load().generation,
        "set": sorted(plan.set),
        "removed": plan.removed,
    }
    fd = os.open(run_dir(home) / AUDIT_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def exec_client(home: Path, plan: LaunchPlan) -> NoReturn:
    """Audit the launch, flush our output, and replace this process with the client."""
    audit(home, plan)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(plan.argv[0], plan.argv, plan.env)
