"""`start`, `stop`, `restart`, `status`, `connect`, `probe`, `metrics`: the running gateway."""
from __future__ import annotations

from pathlib import Path

import typer

from broke.cli.output import JSON_OPTION, console, esc, print_json, say, show, store, table, warn

PORT_OPTION = typer.Option(None, "--port", help="Front proxy port on 127.0.0.1 (default 4000 or $BROKE_PORT).")

FORCE_OPTION = typer.Option(False, "--force", help="Start despite a preflight finding that could hijack the "
                            "process holding the keys (logged).")


def _preflight(home: Path, force: bool) -> None:
    """Refuse to start on a finding that could hijack the gateway (unless `force`); warn of the others."""
    import os

    from broke import preflight

    findings = preflight.preflight(home, os.environ)
    preflight.enforce(home, findings, command="start the gateway", force=force)
    for finding in findings:
        warn(("forced past: " if finding.hijack else "") + finding.message)


def start(port: int | None = PORT_OPTION,
          wait: bool = typer.Option(False, "--wait", help="Also wait until LiteLLM answers, if it is needed."),
          force: bool = FORCE_OPTION) -> None:
    """Start the gateway (if not running) and wait until the front proxy answers.

    LiteLLM starts in the background, and only if some slot's backends need API translation;
    requests that need it wait for it.
    """
    _preflight(store().home, force)
    _start(port, wait)


def _start(port: int | None, wait: bool) -> None:
    """Start the gateway, once the preflight let it, and say how it went."""
    import time

    from broke.control import supervisor
    from broke.control.runfiles import TokenStore
    from broke.local.workers import restart_history

    home = store().home
    began = time.time()
    with console().status("starting the gateway") as spinner:
        record, started = supervisor.start(home, port=port, wait_litellm=wait,
                                           progress=lambda m: spinner.update(m))
    TokenStore(home).token_for("client")
    verb = "started" if started else "already running"
    say(f"gateway {verb} on [bold]{record.base_url}[/] ({len(record.deployments)} deployments); "
        "`broke connect` prints the client settings")
    for key, done in restart_history(home, began).items():  # workers whose supervisor had died
        say(f"worker {esc(key)} brought back" if done.count else
            f"[red]worker {esc(key)} did not come back[/]: {esc(done.error)}")


def stop() -> None:
    """Stop exactly the processes `broke start` launched."""
    from broke.control import supervisor

    done = supervisor.stop(store().home)
    say("\n".join(done) if done else "the gateway is not running")


def restart(port: int | None = PORT_OPTION, force: bool = FORCE_OPTION) -> None:
    """Stop, then start (re-reads keys and custom backends), on the port the gateway had unless --port says;
    this machine's workers (replicas included) keep running and serve the new gateway."""
    from broke.control.runfiles import read_record

    home = store().home
    _preflight(home, force)  # before stopping: a refused restart leaves the gateway as it was
    record = read_record(home)
    from broke.control import supervisor

    done = supervisor.stop(home, keep_workers=True)  # every worker goes on, and joins the new gateway
    say("\n".join(done) if done else "the gateway was not running")
    _start(port or (record.front.port if record else None), False)


def status(as_json: bool = JSON_OPTION) -> None:
    """Show the gateway's processes, ports and health, and this machine's workers and their restarts."""
    from dataclasses import asdict

    from broke.control import supervisor
    from broke.control.checks import health_file
    from broke.local.workers import Restarts, inspect_worker, read_workers, restart_history
    from broke.shared import shared_status

    home = store().home
    current = supervisor.status(home)
    views = [inspect_worker(home, w) for w in read_workers(home)]
    history = restart_history(home, current.record.started_at if current.record else 0.0)
    health = health_file(home)
    shared = shared_status(home)
    if as_json:
        print_json({
            "health_file": health,
            "shared": shared,
            "running": current.running,
            "stale": current.stale,
            "missing": [p.name for p in current.missing],
            "base_url": current.record.base_url if current.record else None,
            "processes": [{"name": p.name, "pid": p.record.pid, "port": p.record.port, "alive": p.alive,
                           "started": p.started, "log": p.record.log} for p in current.processes],
            "workers": [{"worker": v.record.key, "backend": v.record.backend, "port": v.record.port,
                         "pid": v.record.pid, "server_pid": v.server_pid, "state": v.state,
                         "restarts": asdict(history.get(v.record.key, Restarts()))} for v in views],
        })
        return
    if current.record is None:
        say("gateway: [dim]not running[/] (`broke start`)")
    else:
        word = "[green]running[/]" if current.running else "[red]degraded[/]" if current.missing else \
            "[red]not running[/]"
        say(f"gateway: {word} at {current.record.base_url}" + (" [yellow](stale record)[/]" if current.stale else ""))
        t = table("process", "pid", "port", "alive", "log")
        for p in current.processes:
            alive = "[green]yes[/]" if p.alive else "[red]no[/]" if p.started else "[dim]not needed yet[/]"
            t.add_row(p.name, str(p.record.pid) if p.started else "-", str(p.record.port), alive, esc(p.record.log))
        show(t)
        for p in current.missing:
            say(f"[red]{p.name} (pid {p.record.pid}) is not running[/]; `broke start` brings it back")
    if views:
        t = table("worker", "pid", "port", "state", "restarts")
        for v in views:
            done = history.get(v.record.key, Restarts())
            t.add_row(esc(v.record.key), str(v.record.pid), str(v.record.port), v.state,
                      str(done.count) + (" [red](gave up)[/]" if done.gave_up else ""))
        show(t)
    if shared != "off":
        say("shared state: " + ("[green]Redis ok[/]" if shared == "ok" else f"[yellow]{esc(shared)}[/]"))
    if health["problem"]:
        say(f"[red]health.json is unreadable[/]: {esc(health['problem'])}; the gateway serves from memory and "
            "rewrites it on its next health change (see `broke doctor`)")
    for copy in health["kept_aside"]:
        say(f"[yellow]a corrupt health.json was kept aside as {esc(copy)}[/]")
    for key, done in history.items():
        if done.gave_up:
            say(f"[red]the gateway gave up restarting the worker {esc(key)}[/] ({esc(done.error)}); "
                "`broke start` tries again")


def bare() -> None:
    """`broke` with no command: start the gateway if needed, then show its status."""
    start(None, False)
    status(False)


def connect(profile: str | None = typer.Option(None, "--profile", "-p", help="A profile-bound token."),
            admin: bool = typer.Option(False, "--admin", help="The admin token of /admin/v1 instead (never give "
                                                              "it to a client)."),
            as_json: bool = JSON_OPTION) -> None:
    """Print the base URL and the client token (or a profile's, or the admin token) for clients."""
    from broke.control import supervisor
    from broke.control.runfiles import DEFAULT_PORT, TokenStore
    from broke.control.tokens import admin_token
    from broke.errors import UsageProblem
    from broke.presets import profiles

    home = store().home
    owner = "client"
    if profile and admin:
        raise UsageProblem("--admin and --profile do not go together: the admin token belongs to no profile")
    if profile:
        profiles(home).get(profile)
        owner = f"profile:{profile}"
    token = admin_token(home) if admin else TokenStore(home).token_for(owner)
    current = supervisor.status(home)
    record = current.record
    base_url = record.base_url if record else f"http://127.0.0.1:{DEFAULT_PORT}"
    if not any(p.name == "front" and p.alive for p in current.processes):
        warn(f"the gateway is not running: nothing answers at {base_url} until `broke start`")
    if admin:
        if as_json:
            print_json({"base_url": base_url, "admin_token": token, "openapi": f"{base_url}/admin/v1/openapi.json"})
            return
        say(f"base URL:    {base_url}/admin/v1\nadmin token: {token}\n[dim]Authorization: Bearer <admin token>; "
            f"the API is described at {base_url}/admin/v1/openapi.json[/]")
        return
    if as_json:
        print_json({"base_url": base_url, "token": token, "profile": profile})
        return
    say(f"base URL: {base_url}\ntoken:    {token}" + (f"  [dim](profile {esc(profile)})[/]" if profile else ""))
    say(f"[dim]Anthropic clients: ANTHROPIC_BASE_URL={base_url} ANTHROPIC_AUTH_TOKEN=<token>\n"
        f"OpenAI clients:    OPENAI_BASE_URL={base_url}/v1 OPENAI_API_KEY=<token>[/]")


def probe(slot: str = typer.Argument(..., help="A slot or client model name."),
          as_json: bool = JSON_OPTION) -> None:
    """Send one tiny real request through the gateway; report latency and who answered (exit 1 on error)."""
    from dataclasses import asdict

    from broke.control.client import probe as run_probe

    result = run_probe(store().home, slot)
    if as_json:
        print_json(asdict(result))
    else:
        colour = "green" if result.status == 200 else "red"
        say(f"{result.slot}: [{colour}]{result.status}[/] in {result.seconds * 1000:.0f} ms from "
            f"[bold]{esc(result.backend)}[/] (attempts {result.attempts}): {esc(result.answer[:120])}")
    if result.status != 200:
        raise typer.Exit(1)


def metrics(as_json: bool = JSON_OPTION) -> None:
    """Requests, errors, failovers, latency and spend per slot and backend since the gateway started."""
    from broke.control.client import metrics_summary

    rows = metrics_summary(store().home)
    if as_json:
        print_json(rows)
        return
    if not rows:
        say("no requests yet")
        return
    t = table("slot", "backend", "requests", "errors", "failovers", "p50 ms", "p99 ms", "spent $", "saved $")
    for r in rows:
        spent = f"{r['cost_usd']:.4f}" + (f" ({r['unpriced']} unpriced)" if r["unpriced"] else "")
        t.add_row(r["slot"], esc(r["backend"]), str(r["requests"]), str(r["errors"]), str(r["failovers"]),
                  str(r["p50_ms"] if r["p50_ms"] is not None else "-"),
                  str(r["p99_ms"] if r["p99_ms"] is not None else "-"), spent, f"{r['saved_usd']:.4f}")
    show(t)


def register(app: typer.Typer) -> None:
    for command in (start, stop, restart, status, connect, probe, metrics):
        app.command(command.__name__)(command)
