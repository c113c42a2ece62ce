"""`router show|tier|thresholds`: the complexity router's tiers for the `auto` slot."""
from __future__ import annotations

from typing import Optional

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, store, table

router_app = typer.Typer(no_args_is_help=True, help="The complexity router: tiers and thresholds for `auto`.")


@router_app.command("show")
def router_show(as_json: bool = JSON_OPTION) -> None:
    """Tiers, their backends, and the p_strong at which each starts."""
    from broke.state.model import TIERS
    from broke.state.schema import unstructure

    router = store().load().router
    if as_json:
        print_json(unstructure(router))
        return
    starts = {"basic": 0.0, "balanced": router.balanced_from, "premium": router.premium_from}
    t = table("tier", "from p_strong", "backends")
    for tier in TIERS:
        t.add_row(tier, f"{starts[tier]:.3f}", esc(", ".join(router.tiers.get(tier, []))) or "[dim]none[/]")
    show(t)


@router_app.command("tier")
def router_tier(tier: str = typer.Argument(..., metavar="basic|balanced|premium"),
                backends: Optional[list[str]] = typer.Argument(None, metavar="[BACKEND…]",
                                                              help="Backends in order; none clears the tier.")) -> None:
    """Set a tier's backends (requests that land in it try them in order, then the tiers above)."""
    from broke import changes

    state = changes.set_tier(store(), tier, list(backends or []))
    say(f"tier {tier}: {esc(', '.join(state.router.tiers.get(tier, []))) or 'cleared'} "
        f"(generation {state.generation})")


@router_app.command("thresholds")
def router_thresholds(balanced: Optional[float] = typer.Option(None, "--balanced", help="p_strong where balanced starts."),
                      premium: Optional[float] = typer.Option(None, "--premium", help="p_strong where premium starts.")) -> None:
    """Set where the tiers start on p_strong (see also `broke router calibrate`)."""
    from broke import changes

    state = changes.set_thresholds(store(), balanced_from=balanced, premium_from=premium)
    say(f"balanced from {state.router.balanced_from:.3f}, premium from {state.router.premium_from:.3f} "
        f"(generation {state.generation})")


def register(app: typer.Typer) -> None:
    app.add_typer(router_app, name="router")
