"""`route`, `explain`, `validate`, `doctor`: every one asks the same resolver."""
from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, status_text, store, table

if TYPE_CHECKING:
    from broke.context import RoutingContext
    from broke.cost.budgets import Standing
    from broke.routing.resolve import Candidate, Resolution
    from broke.routing.transport import Route

PROFILE_OPTION = typer.Option(None, "--profile", "-p", help="Resolve with this profile's access limits.")
PROMPT_OPTION = typer.Option(None, "--prompt", help="For `auto`: decide the tier for this prompt.")
LEVEL_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def _resolve(slot: str, profile: str | None, prompt: str | None = None, with_speeds: bool = False,
             every_tier: bool = False) -> tuple[Resolution, RoutingContext]:
    from broke.context import RoutingContext
    from broke.routing.resolve import Scope

    s = store()
    ctx = RoutingContext.load(s, with_speeds=with_speeds)
    scope = None
    if profile:
        from broke.presets import profiles

        access = profiles(s.home).get(profile).preset.access
        scope = Scope(profile, access)
    if prompt is None:
        return (ctx.resolve_tiers(slot, scope) if every_tier else ctx.resolve(slot, scope)), ctx
    from broke.router.learned import load  # only now the router is loaded

    return ctx.resolve(slot, scope, prompt, load(s.home)), ctx


def _choice_line(resolution: Resolution) -> str:
    chosen = resolution.chosen
    if chosen is None:
        return f"{resolution.slot} → [red]none[/]: {esc(resolution.reason)}"
    key = f" [dim]key {chosen.key_env}[/]" if chosen.key_env else ""
    return f"{resolution.slot} → [bold]{esc(chosen.backend)}[/]{key} [dim]({chosen.source})[/]"


def route(slot: str = typer.Argument(..., help="A slot or a client model name (e.g. claude-sonnet-4-5)."),
          profile: str | None = PROFILE_OPTION, prompt: str | None = PROMPT_OPTION,
          as_json: bool = JSON_OPTION) -> None:
    """Print the backend a request for SLOT would go to now (exit 1 if none)."""
    resolution, _ = _resolve(slot, profile, prompt)
    chosen = resolution.chosen
    if as_json:
        print_json(resolution.to_dict())
    elif chosen is None:  # plain styled echo, not rich: `route` is the command scripts call often
        typer.echo(f"{resolution.slot} → {typer.style('none', fg='red')}: {resolution.reason}")
    else:
        key = f" key {chosen.key_env}" if chosen.key_env else ""
        typer.echo(f"{resolution.slot} → {typer.style(chosen.backend, bold=True)}{key} ({chosen.source})")
    if resolution.chosen is None:
        raise typer.Exit(1)


def explain(slot: str = typer.Argument(..., help="A slot or a client model name."),
            profile: str | None = PROFILE_OPTION, prompt: str | None = PROMPT_OPTION,
            as_json: bool = JSON_OPTION) -> None:
    """Show the whole candidate chain for SLOT, why each is usable or skipped, and its measured speed here."""
    from broke.control.runfiles import read_record

    resolution, ctx = _resolve(slot, profile, prompt, with_speeds=True, every_tier=True)
    budgets = _budgets(ctx, resolution, profile or ctx.state.active_profile)
    if as_json:
        print_json({**resolution.to_dict(), "budgets": [b.to_dict() for b in budgets]})
        return
    record = read_record(ctx.home)
    routes = ctx.routes(resolution, record.direct_workers if record else {},
                        record.native_forwarding if record else True)
    if resolution.requested != resolution.slot:
        say(f"[dim]{esc(resolution.requested)} is an alias of slot {resolution.slot}[/]")
    say(_choice_line(resolution) + f" [dim]· generation {resolution.generation}[/]")
    if resolution.tier:
        say(f"router: p_strong {resolution.p_strong:.3f} → tier [bold]{resolution.tier}[/]")
    if prompt is not None:
        from broke.router.decide import prompt_drivers, prompt_neighbours

        drivers = ", ".join(f"{name} {value:+.2f}" for name, value in prompt_drivers(store().home, prompt))
        say(f"router: prior p_strong driven by (logit contributions): {esc(drivers)}")
        from broke.router.outcomes import snippets

        learned = prompt_neighbours(store().home, prompt)
        if learned.neighbours:
            texts = snippets(store().home, (n.name for n in learned.neighbours))  # where prompt text was kept
            names = ", ".join(f"{esc(n.name)}{_quoted(texts.get(n.name))} (similarity {n.similarity:.2f}, "
                              f"strong needed {n.target:.2f}, pull {n.share:.0%})" for n in learned.neighbours)
            say(f"router: your labels carry {learned.weight:.0%} here (prior {learned.prior:.3f} → "
                f"{learned.p_strong:.3f}); nearest labels: {names}")
    t = table("#", "backend", "key", "source", "version", "health", "speed here", "verdict")
    for number, c in enumerate(resolution.candidates, start=1):
        version = {True: "pinned", False: "[yellow]floating[/]", None: "?"}[c.pinned]
        t.add_row(str(number), esc(c.backend), c.key_env or "[dim]none needed[/]", c.source,
                  version, f"{status_text(c.model_health)} / {status_text(c.key_health)}", _speed(c),
                  _verdict(resolution, c, routes))
    show(t)
    if resolution.cooldown_last:
        say("[dim]policy: candidates in cooldown are tried last, after every usable one (the default; "
            f"`broke model-policy {resolution.slot} --no-cooldown-last` fails fast); blocked and auth-failed "
            "ones never[/]")
    else:
        say("[yellow]policy:[/] candidates in cooldown or blocked are never tried "
            f"(`broke model-policy {resolution.slot} --cooldown-last` tries cooldown ones last)")
    for note in resolution.notes:
        say(f"[yellow]note:[/] {esc(note)}")
    _pool_lines(ctx, resolution)
    for budget in budgets:
        say(f"{'[red]' if budget.over else '[yellow]' if budget.warning else '[dim]'}budget:[/] "
            f"{esc(budget.describe())}")
    from broke.local.demo import NEXT_STEP, is_demo

    if any(is_demo(c.backend) for c in resolution.candidates):
        say(f"[yellow]demo:[/] {esc(NEXT_STEP)}")


def _pool_lines(ctx: RoutingContext, resolution: Resolution) -> None:
    """Each local candidate's pool: its replicas' weights (share of the traffic) and why."""
    from broke.local.weights import pool_weights
    from broke.local.workers import local_bases

    pools = pool_weights(ctx.home, ctx.state, local_bases(ctx.home))
    for c in resolution.candidates:
        pool = pools.get(c.backend)
        if not pool:
            continue
        total = sum(w.value for w in pool.values()) or 1.0
        for url, weight in pool.items():
            say(f"pool {esc(c.backend)}: {esc(url)} weight {weight.value:.1f} "
                f"({weight.value / total:.0%} of the traffic when idle) — {esc(weight.why)}")


def _budgets(ctx: RoutingContext, resolution: Resolution, profile: str) -> list[Standing]:
    """The budgets a request for the slot is held to: its profile's, and those of its candidates' keys."""
    import time

    from broke.cost.standing import standings

    owners = {f"profile '{profile}'"} | {f"key {c.key_env}" for c in resolution.candidates if c.key_env}
    found = standings(ctx.home, ctx.state, ctx.catalog, ctx.env, time.time())
    return [s for s in found if s.owner in owners]


def _verdict(resolution: Resolution, candidate: Candidate, routes: dict[str, Route]) -> str:
    """Where a candidate stands: chosen, tried later (#n of the attempts), or skipped and why."""
    place = next((n for n, a in enumerate(resolution.attempts, start=1)
                  if a.deployment == candidate.deployment), None)
    if place is None:
        if candidate.usable:
            return "[dim]skip[/] beyond the key policy's retries"
        return f"[red]skip[/] {esc(candidate.skip_reason)}"
    attempt = resolution.attempts[place - 1]
    word = "[green]chosen[/]" if place == 1 else f"[green]attempt {place}[/]"
    word += f" [dim]via {routes[attempt.deployment].via}[/]"
    if attempt.last_resort:
        return f"{word} [yellow]last resort[/] ({esc(candidate.skip_reason)})"
    return word + (" [yellow](busy)[/]" if attempt.busy else "")


def _quoted(snippet: str | None) -> str:
    """A labelled neighbour's stored prompt text, as `explain` shows it after the request id ("" if none kept)."""
    return f' "{esc(snippet)}"' if snippet else ""


def _speed(candidate) -> str:
    """A candidate's measured speed on this machine, as explain shows it."""
    if candidate.decode_tps is None and candidate.ttft_s is None:
        return "[dim]not measured[/]"
    parts = [f"{candidate.decode_tps:,.0f} tok/s"] if candidate.decode_tps else []
    parts += [f"first token {candidate.ttft_s * 1000:,.0f} ms"] if candidate.ttft_s else []
    return " · ".join(parts)


def _findings_table(findings: list[dict]) -> None:
    if not findings:
        say("[green]no problems found[/]")
        return
    t = table("level", "check", "about", "message")
    for f in findings:
        t.add_row(f"[{LEVEL_STYLE[f['level']]}]{f['level']}[/]", f["code"], esc(f["subject"]),
                  esc(f["message"]))
    show(t)


def validate(as_json: bool = JSON_OPTION) -> None:
    """Static checks: unknown backends, missing keys, fallback cycles, floating aliases, frozen (exit 1 on errors)."""
    from broke import diagnostics
    from broke.context import RoutingContext

    findings, resolutions = diagnostics.validate(RoutingContext.load(store()))
    data = [f.__dict__ for f in findings]
    ok = not any(f.level == "error" for f in findings)
    if as_json:
        print_json({"ok": ok, "findings": data, "resolutions": [r.to_dict() for r in resolutions]})
    else:
        _findings_table(data)
    if not ok:
        raise typer.Exit(1)


def doctor(as_json: bool = JSON_OPTION,
           static: bool = typer.Option(False, "--static", help="Skip the live checks (gateway, backends).")) -> None:
    """Check the state file, permissions, keys, every slot's resolution, and the live gateway (exit 1 on errors)."""
    from dataclasses import asdict

    from broke import diagnostics
    from broke.context import RoutingContext

    ctx = RoutingContext.load(store())
    report = diagnostics.doctor(ctx)
    if not static:
        from broke.control.checks import live_checks

        live, findings = live_checks(ctx, [ctx.resolve(r["slot"]) for r in report["resolutions"]])
        report["live"] = live
        report["findings"] += [asdict(f) for f in findings]
        report["ok"] = report["ok"] and not any(f.level == "error" for f in findings)
    import time

    from broke.cost.standing import standings

    budgets = standings(ctx.home, ctx.state, ctx.catalog, ctx.env, time.time())
    report["budgets"] = [b.to_dict() for b in budgets]
    if as_json:
        print_json(report)
    else:
        st = report["state"]
        exists = "" if st["exists"] else " [dim](not written yet: defaults)[/]"
        say(f"[bold]state[/] {esc(st['path'])}{exists}: schema {st['schema_version']}, "
            f"generation {st['generation']}, team {st['active_team'] or '-'}, "
            f"profile {st['active_profile'] or '-'}" + (", [red]frozen[/]" if st["frozen"] else ""))
        keys = ", ".join(f"{k['provider']} ×{len(k['present'])}" for k in report["keys"] if k["present"])
        say(f"[bold]keys[/] {keys or '[yellow]no provider keys set[/]'}")
        gateway = report.get("live", {}).get("gateway")
        if gateway:
            state_word = "[green]running[/]" if gateway["running"] else "[dim]not running[/]"
            say(f"[bold]gateway[/] {state_word}" + (f" at {gateway['base_url']}" if gateway.get("base_url") else ""))
        for resolution in report["resolutions"]:
            chosen = resolution["chosen"]
            line = (f"[green]ok[/]  {resolution['slot']} → {esc(chosen['deployment'])}" if chosen
                    else f"[red]bad[/] {resolution['slot']}: {esc(resolution['reason'])}")
            say("  " + line)
        for budget in budgets:
            say(f"[bold]budget[/] {esc(budget.describe())}")
        _findings_table([f for f in report["findings"] if f["code"] != "no_candidate"])
    if not report["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("route")(route)
    app.command("explain")(explain)
    app.command("validate")(validate)
    app.command("doctor")(doctor)
