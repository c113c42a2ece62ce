"""`sandbox check|exec|default`: what this machine confines, any command in a profile, each client's default."""
from __future__ import annotations

import typer

from broke.cli.launch import FORCE_OPTION, PASS_THROUGH, PROFILE_OPTION
from broke.cli.output import JSON_OPTION, print_json, say, store

app = typer.Typer(help="Run agents confined: profiles normal, hardened and strict (see the README).",
                  no_args_is_help=True)


@app.command("check")
def check(as_json: bool = JSON_OPTION) -> None:
    """Say which sandbox profiles this machine enforces, with which mechanism (each is tried for real)."""
    from broke.sandbox.support import check as probe

    support = probe()
    if as_json:
        print_json({"mechanism": support.mechanism, "path": support.path,
                    "profiles": {p: {"enforced": not why, "reason": why} for p, why in support.profiles.items()}})
        return
    say(f"mechanism: {support.mechanism}" + (f" ({support.path})" if support.path else ""))
    for profile, why in support.profiles.items():
        say(f"  {profile:<9}" + ("[green]enforced[/]" if not why else f"[red]not enforceable[/]: {why}"))


@app.command("exec", context_settings=PASS_THROUGH,
             options_metavar="[--profile P] [--force] PROFILE -- COMMAND [ARGS]...")
def exec_command(ctx: typer.Context,
                 sandbox: str = typer.Argument(..., metavar="PROFILE", help="normal, hardened or strict."),
                 profile: str | None = PROFILE_OPTION, force: bool = FORCE_OPTION) -> None:
    """Run COMMAND through the gateway in a sandbox profile; exits with its status.

    Sets the variables of every client API: ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN, OPENAI_BASE_URL,
    OPENAI_API_KEY (the gateway is started if needed).
    """
    from broke.cli.launch import launch_client
    from broke.launch import COMMAND

    args = list(ctx.args)
    if args[:1] == ["--"]:
        args = args[1:]
    launch_client(COMMAND, args, profile, sandbox, force)


@app.command("default")
def default(client: str = typer.Argument(..., metavar="CLIENT", help="claude, codex or gemini."),
            profile: str | None = typer.Argument(None, metavar="[PROFILE]",
                                                 help="normal, hardened or strict; omitted: show it.")) -> None:
    """Set (or show) the sandbox profile CLIENT launches in when no --sandbox is given."""
    from broke import changes
    from broke.sandbox.policy import check_client

    st = store()
    check_client(client)
    if profile is None:
        say(f"{client}: {changes.default_sandbox(st.load(), client)}")
        return
    changes.set_default_sandbox(st, client, profile)
    say(f"{client} now launches in the [bold]{profile}[/] sandbox by default")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="sandbox")
