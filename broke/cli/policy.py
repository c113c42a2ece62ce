"""`key-policy`, `key-state`, `model-policy`, `model-state`: live policy, applied to the next request."""
from __future__ import annotations

import time

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, status_text, store, table
from broke.errors import UsageProblem

FOR_OPTION = typer.Option(None, "--for", help="Seconds the status lasts (cooldown default: 60 s).")


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def key_policy(
    provider: str | None = typer.Argument(None, help="Provider to change; none: show every policy."),
    mode: str | None = typer.Option(None, "--mode", help="round_robin | priority | sticky | rotate_on_rate_limit"),
    cooldown: int | None = typer.Option(None, "--cooldown", help="Seconds a rate-limited key sits out."),
    retries: int | None = typer.Option(None, "--retries", help="More keys to try after one fails."),
    order: str | None = typer.Option(None, "--order", help="Key variables in order: K1,K2"),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="USD each key may spend per period; 0 = none."),
    budget_period: str | None = typer.Option(None, "--budget-period", help="day | month (default month)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show key policies, or change one provider's."""
    from broke import changes
    from broke.catalog import load_catalog
    from broke.state.model import KeyPolicy
    from broke.state.schema import unstructure

    budget = changes.BudgetChange(budget_usd, budget_period)
    if provider is not None and (any(v is not None for v in (mode, cooldown, retries, order)) or not budget.empty):
        state = changes.set_key_policy(store(), provider, mode=mode, cooldown_s=cooldown, retries=retries,
                                       order=_split(order), budget=budget)
        say(f"key policy of {provider} updated (generation {state.generation})")
        return
    state = store().load()
    catalog = load_catalog()
    if provider:
        catalog.provider(provider)
    providers = [provider] if provider else changes.key_policy_providers(state, catalog)
    rows = {p: unstructure(state.key_policy.get(p, KeyPolicy())) for p in providers}
    if as_json:
        print_json(rows)
        return
    t = table("provider", "mode", "cooldown s", "retries", "order", "budget per key")
    for p, policy in rows.items():
        budget_usd = policy["budget"]["usd"]
        t.add_row(p, policy["mode"], str(policy["cooldown_s"]), str(policy["retries"]),
                  ", ".join(policy["order"]) or "-",
                  f"${budget_usd:g} per {policy['budget']['period']}" if budget_usd else "-")
    show(t)


def _say_set(name: str, status: str, until: float | None) -> None:
    say(f"{esc(name)}: {status}" + (f" for {until - time.time():.0f}s" if until else ""))


def key_state(
    action: str | None = typer.Argument(None, metavar="[set]"),
    key: str | None = typer.Argument(None, metavar="[KEY]", help="A key variable, e.g. OPENROUTER_API_KEY_2."),
    new_status: str | None = typer.Argument(None, metavar="[healthy|cooldown|blocked|auth_failed]"),
    seconds: float | None = FOR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every key's state (names only, never values), or set one by hand (auth_failed: a revoked key)."""
    from dataclasses import asdict

    from broke.changes.health import key_rows, set_key_state

    if action is not None:
        if action != "set" or not key or not new_status:
            raise UsageProblem(
                "use `broke key-state` or `broke key-state set KEY healthy|cooldown|blocked|auth_failed`")
        _say_set(key, new_status, set_key_state(store().home, key, new_status, seconds))
        return
    rows = [asdict(r) for r in key_rows(store().home)]
    if as_json:
        print_json(rows)
        return
    _show_health(rows, "key", with_provider=True)


def _show_health(rows: list[dict], noun: str, with_provider: bool = False) -> None:
    if not rows:
        say(f"no {noun}s known")
        return
    columns = [noun] + (["provider"] if with_provider else []) + ["status", "for", "reason", "failures"]
    t = table(*columns)
    now = time.time()
    for r in rows:
        left = f"{r['until'] - now:.0f}s" if r["until"] else "-"
        cells = [esc(r["name"])] + ([r["provider"]] if with_provider else [])
        t.add_row(*cells, status_text(r["status"]), left, esc(r["reason"]) or "-", str(r["failures"]))
    show(t)


def model_policy(
    slot: str | None = typer.Argument(None, help="Slot to change; none: show every policy."),
    mode: str | None = typer.Option(
        None, "--mode",
        help="priority_order (or ordered) | round_robin | fastest (by measured speed) | cheapest (by expected cost)"),
    order: str | None = typer.Option(None, "--order", help="Backends to try first, in order: B1,B2"),
    cooldown_last: bool | None = typer.Option(
        None, "--cooldown-last/--no-cooldown-last",
        help="Try candidates in cooldown after every usable one (the default; --no-cooldown-last fails fast; "
             "blocked and auth-failed: never)."),
    retries: int | None = typer.Option(None, "--retries", help="More backends to try after the first fails."),
    cooldown: int | None = typer.Option(None, "--cooldown", help="Longest seconds a failed backend sits out."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show model policies, or change one slot's."""
    from broke import changes
    from broke.catalog import load_catalog
    from broke.state.model import ModelPolicy
    from broke.state.schema import unstructure

    if slot is not None and any(v is not None for v in (mode, order, cooldown_last, retries, cooldown)):
        state = changes.set_model_policy(store(), slot, mode=mode, order=_split(order),
                                         cooldown_last=cooldown_last, retries=retries, cooldown_s=cooldown)
        say(f"model policy of {slot} updated (generation {state.generation})")
        if state.model_policy[changes.check_slot(slot, load_catalog())].mode == "fastest":
            _say_measured(slot)
        return
    state = store().load()
    slots = [changes.check_slot(slot, load_catalog())] if slot else list(load_catalog().slots)
    rows = {s: unstructure(state.model_policy.get(s, ModelPolicy())) for s in slots}
    if as_json:
        print_json(rows)
        return
    t = table("slot", "mode", "order", "cooldown", "retries", "sit-out")
    for s, policy in rows.items():
        t.add_row(s, policy["mode"], esc(", ".join(policy["order"])) or "-",
                  "tried last" if policy["cooldown_last"] else "never tried", str(policy.get("retries", "all")),
                  f"{policy['cooldown_s']}s" if "cooldown_s" in policy else "-")
    show(t)


def _say_measured(slot: str) -> None:
    """Which of the slot's backends have a measured speed on this machine (the others keep their place)."""
    from broke.context import RoutingContext

    resolution = RoutingContext.load(store(), with_speeds=True).resolve(slot)
    backends = list(dict.fromkeys(c.backend for c in resolution.candidates))
    measured = [c.backend for c in resolution.candidates if c.decode_tps]
    missing = [b for b in backends if b not in measured]
    say(f"measured on this machine: {len(set(measured))} of {len(backends)} backend(s)"
        + (f"; not measured (kept in their place, after the measured ones): {esc(', '.join(missing))} "
           "— `broke benchmark-sequential` measures local models, `--backend ID` others" if missing else ""))


def model_state(
    action: str | None = typer.Argument(None, metavar="[set]"),
    backend: str | None = typer.Argument(None, metavar="[BACKEND]"),
    new_status: str | None = typer.Argument(None, metavar="[healthy|cooldown|blocked|incompatible]"),
    seconds: float | None = FOR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every routed backend's state, or set one by hand (incompatible: it cannot serve its slots)."""
    from dataclasses import asdict

    from broke.changes.health import model_rows, set_model_state

    if action is not None:
        if action != "set" or not backend or not new_status:
            raise UsageProblem(
                "use `broke model-state` or `broke model-state set BACKEND healthy|cooldown|blocked|incompatible`")
        _say_set(backend, new_status, set_model_state(store().home, backend, new_status, seconds))
        return
    rows = [asdict(r) for r in model_rows(store().home)]
    for row in rows:
        del row["provider"]
    if as_json:
        print_json(rows)
        return
    _show_health(rows, "backend")


def register(app: typer.Typer) -> None:
    app.command("key-policy")(key_policy)
    app.command("key-state")(key_state)
    app.command("model-policy")(model_policy)
    app.command("model-state")(model_state)
