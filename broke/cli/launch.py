"""`claude`, `codex`, `gemini` (short: `c`, `x`, `g`) and `launch-env`: run a coding client through the gateway."""
from __future__ import annotations

import os
import shlex

import typer

from broke.cli.output import JSON_OPTION, print_json, store

#: Everything after broke's own options goes to the client untouched (`--` included, once past them).
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False}
OPTIONS_METAVAR = "[--profile P] [--sandbox S] [--force] [--] [ARGS]..."
PROFILE_OPTION = typer.Option(None, "--profile", metavar="P",
                              help="Use profile P's token (its slots, rpm and tpm limits apply).")
SANDBOX_OPTION = typer.Option(None, "--sandbox", metavar="S",
                              help="Sandbox profile: normal, hardened or strict (default: the client's, "
                                   "`broke sandbox default`).")
FORCE_OPTION = typer.Option(False, "--force", help="Launch despite a preflight finding that could hijack "
                            "broke's process (logged).")


def launch_client(client: str, args: list[str], profile: str | None, sandbox: str | None, force: bool) -> None:
    """Preflight, start the gateway if needed, then replace this process with the client (normal) or
    run it confined and exit with its status."""
    from pathlib import Path

    from rich.console import Console

    from broke import launch, launch_sandbox

    home = store().home
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # stdout belongs to the client
    chosen, support, findings = launch_sandbox.ready(home, client, sandbox, os.environ, force=force)
    for finding in findings:
        err.print(f"broke: {'forced past' if finding.hijack else 'warning'}: {finding.message}", markup=False)
    with err.status("starting the gateway") as spinner:
        plan, started = launch.prepare(home, client, args, profile=profile, environ=os.environ,
                                       progress=lambda m: spinner.update(m))
    if started:
        err.print(f"broke: gateway started on {plan.base_url}", markup=False)
    if support is None:
        launch.exec_client(home, plan)
    raise typer.Exit(launch_sandbox.run_sandboxed(home, plan, chosen, support, cwd=Path.cwd(), environ=os.environ))


def claude(ctx: typer.Context, profile: str | None = PROFILE_OPTION, sandbox: str | None = SANDBOX_OPTION,
           force: bool = FORCE_OPTION) -> None:
    """Run Claude Code through the gateway (started if needed); ARGS go to claude untouched.

    broke's options come first; `broke claude -- --help` shows claude's own help.
    """
    launch_client("claude", ctx.args, profile, sandbox, force)


def codex(ctx: typer.Context, profile: str | None = PROFILE_OPTION, sandbox: str | None = SANDBOX_OPTION,
          force: bool = FORCE_OPTION) -> None:
    """Run Codex through the gateway (started if needed); ARGS go to codex untouched.

    broke's options come first; `broke codex -- --help` shows codex's own help. Adds
    `-m gpt-5-codex` unless ARGS choose a model with -m/--model.
    """
    launch_client("codex", ctx.args, profile, sandbox, force)


def gemini(ctx: typer.Context, profile: str | None = PROFILE_OPTION, sandbox: str | None = SANDBOX_OPTION,
           force: bool = FORCE_OPTION) -> None:
    """Run Gemini CLI through the gateway (started if needed); ARGS go to gemini untouched.

    broke's options come first; `broke gemini -- --help` shows gemini's own help. Its model names
    (`-m gemini-2.5-flash`) map to the gemini-pro and gemini-flash slots.
    """
    launch_client("gemini", ctx.args, profile, sandbox, force)


def launch_env(client: str = typer.Argument(..., metavar="CLIENT", help="claude, codex or gemini."),
               shell: bool = typer.Option(False, "--shell", help="Print `export`/`unset` lines to eval "
                                          "(with the real token)."),
               profile: str | None = PROFILE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Show what `broke claude` / `broke codex` / `broke gemini` would set and remove (token masked)."""
    from broke import launch, launch_sandbox
    from broke.errors import UsageProblem

    if shell and as_json:
        raise UsageProblem("--shell and --json cannot be used together")
    plan = launch.preview(store().home, client, profile, os.environ)
    sandbox = launch_sandbox.chosen_profile(store().home, client, None)
    if shell:
        typer.echo("\n".join(launch.shell_lines(plan)))
        return
    masked = {name: plan.masked(name) for name in plan.set}
    if as_json:
        print_json({"client": plan.client, "profile": plan.profile, "base_url": plan.base_url,
                    "argv": plan.argv, "set": masked, "removed": plan.removed, "sandbox": sandbox})
        return
    token = f"profile {profile}'s token" if profile else "the client token"
    lines = [f"{plan.client} through {plan.base_url} with {token}",
             f"command: {shlex.join(plan.argv)} [ARGS]...",
             f"sandbox: {sandbox} (default for {plan.client}; `broke sandbox default {plan.client} PROFILE`)"]
    lines += [f"set    {name}={value}" for name, value in masked.items()]
    lines += [f"remove {name}" for name in plan.removed]
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    for name, command, help_text in (("claude", claude, None), ("c", claude, "Short for `broke claude`."),
                                     ("codex", codex, None), ("x", codex, "Short for `broke codex`."),
                                     ("gemini", gemini, None), ("g", gemini, "Short for `broke gemini`.")):
        app.command(name, help=help_text, context_settings=PASS_THROUGH,
                    options_metavar=OPTIONS_METAVAR)(command)
    app.command("launch-env")(launch_env)
