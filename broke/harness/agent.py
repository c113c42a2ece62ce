"""The agent side of a harness run: which client, its task, the launch plan with the run's token and
shims, starting it (confined or not) and continuing its session with reviewers' findings."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from broke.harness.ledger import Ledger
from broke.harness.shim import LEDGER_ENV, RUN_ENV, mask
from broke.harness.shims import install_shims, shimmed_path
from broke.launch import CLIENTS, COMMAND, LaunchPlan, build_plan, client_argv, key_variables
from broke.sandbox.support import Support

#: Signals passed on to the client (a terminal's Ctrl-C reaches it directly).
FORWARDED = (signal.SIGTERM, signal.SIGHUP)
SPILL_DIR = "home"
CODEX_NO_LOGIN_SHELL = ("-c", "allow_login_shell=false")


def split_client(args: Sequence[str]) -> tuple[str, list[str]]:
    """(client, its arguments): a known client (claude, codex) by its name, anything else a command."""
    if args and args[0] in CLIENTS:
        return args[0], list(args[1:])
    return COMMAND, list(args)


def task_of(client: str, args: Sequence[str]) -> str | None:
    """The prompt in a client's arguments: claude's after -p/--print, codex exec's last argument."""
    if client == "claude":
        for index, arg in enumerate(args[:-1]):
            if arg in ("-p", "--print") and not args[index + 1].startswith("-"):
                return args[index + 1]
    if client == "codex" and "exec" in args and args[-1] != "exec" and not args[-1].startswith("-"):
        return args[-1]
    return None


def continuation(client: str, args: Sequence[str], task: str | None, message: str) -> list[str] | None:
    """The client's arguments that continue its last session with `message` (claude --continue, codex exec
    resume --last), or None where broke does not know how."""
    if task is None or task not in args:
        return None
    replaced = [message if arg == task else arg for arg in args]
    if client == "claude":
        return ["--continue", *replaced]
    if client == "codex":
        at = replaced.index("exec")
        return [*replaced[:at + 1], "resume", "--last", *replaced[at + 1:]]
    return None


def findings_message(task: str, verdict: str, findings: Sequence[str]) -> str:
    lines = "\n".join(f"- {f}" for f in findings) or "- (no details given)"
    return (f"Reviewers of your work on this task answered {verdict}. Their findings:\n{lines}\n"
            f"Fix them, run the tests again, and finish the task: {task}")


@dataclass(frozen=True)
class AgentPlan:
    plan: LaunchPlan
    client_args: list[str]
    shimmed: list[str]


def agent_plan(home: Path, ledger: Ledger, client: str, client_args: list[str], base_url: str, token: str,
               environ: Mapping[str, str]) -> AgentPlan:
    """The launch plan with the run's token, the shim directory first on PATH and the ledger's place.
    Codex runs its commands in a login shell, whose profile would put the system's PATH back: not here."""
    if client == "codex":
        client_args = [*CODEX_NO_LOGIN_SHELL, *client_args]
    plan = build_plan(client, base_url, token, client_args, environ, None, key_variables(home))
    shimmed = install_shims(ledger.bin_dir, plan.env)
    extra = {"PATH": shimmed_path(ledger.bin_dir, plan.env), RUN_ENV: ledger.run_id,
             LEDGER_ENV: str(ledger.commands_path)}
    plan = dataclasses.replace(plan, env={**plan.env, **extra}, set={**plan.set, **extra})
    return AgentPlan(plan, client_args, shimmed)


def with_args(agent: AgentPlan, client_args: list[str]) -> AgentPlan:
    argv = client_argv(agent.plan.client, agent.plan.base_url, client_args)
    return dataclasses.replace(agent, plan=dataclasses.replace(agent.plan, argv=argv), client_args=client_args)


def direct_argv(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """`argv` with a script that finds its interpreter on PATH (`#!/usr/bin/env node`, as npm's clients do)
    started by that interpreter directly, found on the caller's PATH: the client itself is not shimmed,
    so stopping it stops the client, not a shim in front of it."""
    program = shutil.which(argv[0], path=environ.get("PATH", os.defpath))
    if program is None:
        return list(argv)
    try:
        with open(program, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return list(argv)
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if len(words) < 2 or os.path.basename(words[0]) != "env" or words[1].startswith("-"):
        return list(argv)
    interpreter = shutil.which(words[1], path=environ.get("PATH", os.defpath))
    return [interpreter, *words[2:], program, *argv[1:]] if interpreter else list(argv)


def _wait(child: subprocess.Popen[bytes]) -> int:
    previous = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s)) for sig in FORWARDED}
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client decides what Ctrl-C does
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, interrupt)


def launch(home: Path, ledger: Ledger, agent: AgentPlan, *, profile: str, support: Support | None, cwd: Path,
           environ: Mapping[str, str]) -> tuple[int, bool]:
    """Run the client to its end: (exit status, whether it ended by a signal rather than by itself)."""
    from broke.launch import audit

    plan = agent.plan
    argv = direct_argv(plan.argv, environ)
    if support is None:
        audit(home, plan)
        child = subprocess.Popen(argv, env=plan.env, cwd=cwd)
        ledger.append("client_started", pid=child.pid, argv=mask(plan.argv), sandbox=profile)
        code = _wait(child)
        return (code, False) if code >= 0 else (128 - code, True)
    from broke.launch_sandbox import confine
    from broke.sandbox.policy import program_paths
    from broke.sandbox.run import run_confined

    policy, env = confine(home, plan, profile, cwd=cwd, environ=environ)
    readable = [ledger.bin_dir, *program_paths(argv[0], environ, policy.home)]
    prefix = Path(sys.base_prefix).resolve()
    if prefix.is_relative_to(policy.home):  # the shims' interpreter lives in the user's home
        readable.append(prefix)
    spill = ledger.root / SPILL_DIR
    spill.mkdir(mode=0o700, exist_ok=True)
    policy = dataclasses.replace(policy, readable=(*policy.readable, *readable),
                                 writable=(*policy.writable, ledger.shims_dir), home_dir=spill)
    audit(home, plan, profile)
    ledger.append("client_started", pid=None, argv=mask(plan.argv), sandbox=profile)
    code = run_confined(support, policy, argv, env)
    return code, code > 128
