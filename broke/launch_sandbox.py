"""Launch a client, or any command, through the gateway inside a sandbox profile: which profile, its
policy for this launch, the environment inside, and the confined run."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from broke.launch import LaunchPlan, audit, is_key, key_variables
from broke.preflight import Finding
from broke.sandbox.policy import Policy, build_policy, check_profile, sandbox_env
from broke.sandbox.support import Support


def chosen_profile(home: Path, client: str, requested: str | None) -> str:
    """`requested` (from --sandbox), else the client's default (`broke sandbox default`), else normal."""
    if requested is not None:
        return check_profile(requested)
    from broke.changes import default_sandbox
    from broke.state.store import StateStore

    return default_sandbox(StateStore(home).load(), client)


def provider_secrets(home: Path) -> list[str]:
    """The values of every provider key broke could use: none of them may reach a sandbox."""
    from broke.keys import provider_env

    keys = key_variables(home)
    return [value for name, value in provider_env(home / ".env").items() if value and is_key(name, keys)]


def confine(home: Path, plan: LaunchPlan, profile: str, *, cwd: Path,
            environ: Mapping[str, str]) -> tuple[Policy, dict[str, str]]:
    """The policy of `profile` for this launch, and the environment the command gets inside."""
    port = urlsplit(plan.base_url).port
    if port is None:
        raise ValueError(f"the gateway's URL {plan.base_url} has no port")
    policy = build_policy(profile, client=plan.client, program=plan.argv[0], cwd=cwd, broke_home=home,
                          environ=environ, gateway_port=port)
    return policy, sandbox_env(plan.env, plan.set, provider_secrets(home))


def run_sandboxed(home: Path, plan: LaunchPlan, profile: str, support: Support, *, cwd: Path,
                  environ: Mapping[str, str]) -> int:
    """Audit the launch and run the plan's command confined by `profile`; its exit status."""
    from broke.sandbox.run import run_confined

    policy, env = confine(home, plan, profile, cwd=cwd, environ=environ)
    audit(home, plan, profile)
    return run_confined(support, policy, plan.argv, env)


def ready(home: Path, client: str, requested: str | None, environ: Mapping[str, str], *,
          force: bool) -> tuple[str, Support | None, list[Finding]]:
    """Before a launch starts anything: the preflight (PreflightRefused on a hijacking finding unless
    `force`), the sandbox profile, and the support that enforces it (None for normal; SandboxUnavailable
    if this machine cannot). Returns (profile, support, the preflight's findings)."""
    from broke import preflight
    from broke.sandbox.support import check

    findings = preflight.preflight(home, environ, lock=False)  # the lock comparison (~0.3 s) is start's
    preflight.enforce(home, findings, command=f"launch {client}", force=force)
    profile = chosen_profile(home, client, requested)
    if profile == "normal":
        return profile, None, findings
    support = check()
    support.require(profile)
    return profile, support, findings
