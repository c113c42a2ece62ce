"""`team save|load|list|show|delete` and `profile new|load|list|show|delete`."""
from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, store, table

if TYPE_CHECKING:
    from broke.presets import Profile

team_app = typer.Typer(no_args_is_help=True, help="Saved slot mappings (with fallbacks).")
profile_app = typer.Typer(no_args_is_help=True, help="A team plus access limits: slots, rpm, tpm.")

NAME = typer.Argument(..., help="Name: letters, digits, '.', '_' or '-'.")
BUDGET_USD = typer.Option(None, "--budget-usd", help="USD the profile may spend per period; 0 = no budget.")
BUDGET_PERIOD = typer.Option(None, "--budget-period", help="day | month (default month), UTC.")
ON_BUDGET = typer.Option(None, "--on-budget", help="Past the budget: refuse (429, default) | fallback (free only).")


@team_app.command("save")
def team_save(name: str = NAME,
              description: str = typer.Option("", "--description", "-d", help="What the team is for.")) -> None:
    """Save the current slot mapping as team NAME."""
    from broke import changes

    path = changes.save_team(store(), name, description)
    say(f"team [bold]{esc(name)}[/] saved to {esc(str(path))}")


@team_app.command("load")
def team_load(name: str = NAME) -> None:
    """Apply team NAME to the slots (a user team, else a shipped preset)."""
    from broke import changes

    state = changes.load_team(store(), name)
    say(f"team [bold]{esc(name)}[/] loaded (generation {state.generation})")


@team_app.command("list")
def team_list(as_json: bool = JSON_OPTION) -> None:
    """List user teams and shipped presets."""
    from broke.presets import teams

    entries = teams(store().home).list()
    if as_json:
        print_json([{"name": e.name, "origin": e.origin, "description": e.preset.description,
                     "slots": len(e.preset.slots)} for e in entries])
        return
    t = table("team", "origin", "slots", "description")
    for e in entries:
        t.add_row(esc(e.name), e.origin, str(len(e.preset.slots)), esc(e.preset.description))
    show(t)


@team_app.command("show")
def team_show(name: str = NAME, as_json: bool = JSON_OPTION) -> None:
    """Show team NAME's slot mapping."""
    from broke.presets import teams
    from broke.state.schema import unstructure

    entry = teams(store().home).get(name)
    if as_json:
        print_json({"name": name, "origin": entry.origin, **unstructure(entry.preset)})
        return
    say(f"[bold]{esc(name)}[/] ({entry.origin}) {esc(entry.preset.description)}")
    t = table("slot", "backend", "fallbacks")
    for slot, config in entry.preset.slots.items():
        t.add_row(slot + (" [dim](pinned)[/]" if config.pinned else ""), esc(config.backend),
                  esc(", ".join(config.fallbacks)) or "-")
    show(t)


@team_app.command("delete")
def team_delete(name: str = NAME) -> None:
    """Delete user team NAME (shipped presets stay)."""
    from broke.presets import teams

    teams(store().home).delete(name)
    say(f"team [bold]{esc(name)}[/] deleted")


@team_app.command("fallback")
def team_fallback(
    name: str = NAME,
    slot: str = typer.Argument(..., help="A slot the team sets."),
    entries: list[str] = typer.Argument(..., metavar="BACKEND...", help="Backend ids or slot names, in order."),
) -> None:
    """Set the fallbacks of SLOT in team NAME (a shipped team is saved as your own copy)."""
    from broke import changes

    path = changes.set_team_fallbacks(store(), name, slot, list(entries))
    say(f"team [bold]{esc(name)}[/]: {esc(slot)} falls back to {esc(', '.join(entries))} ({esc(str(path))}); "
        f"`broke team load {esc(name)}` applies it")


@team_app.command("access")
def team_access(
    name: str = NAME,
    slots: str | None = typer.Option(None, "--slots", help="Allowed slots, comma-separated ('' = all)."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute; 0 = unlimited."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute; 0 = unlimited."),
) -> None:
    """Set the access limits loading team NAME applies (omitted = unchanged)."""
    from broke import changes

    slot_list = None if slots is None else [s.strip() for s in slots.split(",") if s.strip()]
    path = changes.set_team_access(store(), name, slots=slot_list, rpm=rpm, tpm=tpm)
    say(f"team [bold]{esc(name)}[/]: access limits saved ({esc(str(path))}); `broke team load {esc(name)}` "
        "applies them")


@profile_app.command("new")
def profile_new(
    name: str = NAME,
    team: str | None = typer.Option(None, "--team", "-t", help="Team the profile loads ('' = none)."),
    slots: str | None = typer.Option(None, "--slots", help="Allowed slots, comma-separated ('' = all)."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute; 0 = unlimited."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute; 0 = unlimited."),
    description: str | None = typer.Option(None, "--description", "-d"),
    budget_usd: float | None = BUDGET_USD,
    budget_period: str | None = BUDGET_PERIOD,
    on_budget: str | None = ON_BUDGET,
) -> None:
    """Create profile NAME, or change the given fields of an existing one (omitted = unchanged)."""
    from broke import changes

    slot_list = None if slots is None else [s.strip() for s in slots.split(",") if s.strip()]
    change = changes.ProfileChange(team=team, slots=slot_list, rpm=rpm, tpm=tpm, description=description,
                                   budget=changes.BudgetChange(budget_usd, budget_period, on_budget))
    path, created = changes.write_profile(store(), name, change)
    say(f"profile [bold]{esc(name)}[/] {'created' if created else 'updated'}: {esc(str(path))}")


@profile_app.command("budget")
def profile_budget(
    name: str = NAME,
    budget_usd: float | None = BUDGET_USD,
    budget_period: str | None = BUDGET_PERIOD,
    on_budget: str | None = ON_BUDGET,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show what profile NAME may spend and has left, or change its budget (an existing profile only)."""
    import time

    from broke import changes
    from broke.cost.standing import budget_standing

    change = changes.BudgetChange(budget_usd, budget_period, on_budget)
    if not change.empty:
        changes.set_profile_budget(store(), name, change)
    standing = budget_standing(store().home, name, time.time())
    if as_json:
        print_json(standing.to_dict() if standing else {"owner": f"profile '{name}'", "budget_usd": 0})
    elif standing is None:
        say(f"profile [bold]{esc(name)}[/] has no budget")
    else:
        say(esc(standing.describe()))


@profile_app.command("load")
def profile_load(name: str = NAME) -> None:
    """Apply profile NAME: load its team and set its access limits."""
    from broke import changes

    state = changes.load_profile(store(), name)
    say(f"profile [bold]{esc(name)}[/] loaded (generation {state.generation})")


def _limit(value: int) -> str:
    return str(value) if value else "unlimited"


def _budget(profile: Profile) -> str:
    budget = profile.budget
    if not budget.usd:
        return "none"
    return f"${budget.usd:g} per {budget.period}" + (", then free only" if profile.on_budget == "fallback" else "")


@profile_app.command("list")
def profile_list(as_json: bool = JSON_OPTION) -> None:
    """List user profiles and shipped presets."""
    from broke.presets import profiles
    from broke.state.schema import unstructure

    entries = profiles(store().home).list()
    if as_json:
        print_json([{"name": e.name, "origin": e.origin, **unstructure(e.preset)} for e in entries])
        return
    t = table("profile", "origin", "team", "slots", "rpm", "tpm", "budget", "description")
    for e in entries:
        p = e.preset
        t.add_row(esc(e.name), e.origin, esc(p.team) or "-", ", ".join(p.access.slots) or "all",
                  _limit(p.access.rpm), _limit(p.access.tpm), _budget(p), esc(p.description))
    show(t)


@profile_app.command("show")
def profile_show(name: str = NAME, as_json: bool = JSON_OPTION) -> None:
    """Show profile NAME."""
    from broke.presets import profiles
    from broke.state.schema import unstructure

    entry = profiles(store().home).get(name)
    p = entry.preset
    if as_json:
        print_json({"name": name, "origin": entry.origin, **unstructure(p)})
        return
    say(f"[bold]{esc(name)}[/] ({entry.origin}) {esc(p.description)}")
    say(f"  team: {esc(p.team) or '-'}\n  slots: {', '.join(p.access.slots) or 'all'}\n"
        f"  rpm: {_limit(p.access.rpm)}\n  tpm: {_limit(p.access.tpm)}\n  budget: {_budget(p)}")


@profile_app.command("delete")
def profile_delete(name: str = NAME) -> None:
    """Delete user profile NAME (shipped presets stay)."""
    from broke.presets import profiles

    profiles(store().home).delete(name)
    say(f"profile [bold]{esc(name)}[/] deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(team_app, name="team")
    app.add_typer(profile_app, name="profile")
