"""`cost`: what requests cost and saved, from the ledger; `cost reference`: what savings are measured against."""
from __future__ import annotations

from pathlib import Path

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, store, table

cost_app = typer.Typer(invoke_without_command=True, help="What requests cost and saved (the ledger).")


def usd(value: float) -> str:
    return f"${value:,.4f}"


@cost_app.callback()
def cost(
    ctx: typer.Context,
    by: str | None = typer.Option(None, "--by", help="Group by slot | backend | profile | day."),
    since: str | None = typer.Option(None, "--since", metavar="DATE", help="From this day on (YYYY-MM-DD, UTC)."),
    plot: Path | None = typer.Option(None, "--plot", metavar="FILE.png", help="Draw spend and savings per day."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Spend and savings of the answered requests (in total, or grouped)."""
    if ctx.invoked_subcommand is not None:
        return
    from broke.cost.ledger import parse_since, summarize

    if plot is not None:
        from broke.plotting import check_target

        check_target(plot.expanduser())
    start = parse_since(since)
    summary = summarize(store().home, by=by, since=start)
    if plot is not None:
        from broke.plotting import bar_plot

        days = summarize(store().home, by="day", since=start).rows
        if days:
            path = bar_plot(plot.expanduser(), groups=[str(r["day"]) for r in days],
                            series={"spent USD": [r["total_usd"] for r in days],
                                    "saved USD": [r["saved_usd"] for r in days]},
                            title="spend and savings per day", ylabel="USD")
            if not as_json:
                say(f"plot written to {esc(str(path))}")
        elif not as_json:
            say("nothing to plot: no requests in the ledger for that span")
    if as_json:
        print_json(summary.to_dict())
        return
    unpriced = f", {summary.unpriced} unpriced (not counted)" if summary.unpriced else ""
    say(f"{summary.requests} requests: spent [bold]{usd(summary.total_usd)}[/], "
        f"saved [bold]{usd(summary.saved_usd)}[/] against each slot's reference{unpriced}")
    if by is not None and summary.rows:
        t = table(by, "requests", "tokens", "spent", "saved", "unpriced")
        for row in summary.rows:
            t.add_row(esc(str(row[by])), str(row["requests"]), str(row["tokens"]), usd(row["total_usd"]),
                      usd(row["saved_usd"]), str(row["unpriced"]) if row["unpriced"] else "-")
        show(t)


@cost_app.command("reference")
def cost_reference(
    slot: str = typer.Argument(..., help="The slot whose answers are priced against BACKEND."),
    backend: str = typer.Argument(..., help="The backend savings are measured against."),
) -> None:
    """Measure a slot's savings against BACKEND (default: its backend in the shipped cloud-direct team)."""
    from broke import changes

    state = changes.set_cost_reference(store(), slot, backend)
    say(f"slot [bold]{esc(slot)}[/] is priced against {esc(backend)} (generation {state.generation})")


def register(app: typer.Typer) -> None:
    app.add_typer(cost_app, name="cost")
