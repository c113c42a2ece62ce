"""`key-policy`, `key-state`, `model-policy`, `model-state`: live policy, applied to the next request."""
from __future__ import annotations

import re
import time

import typer

from broke.cli.output import JSON_OPTION, esc, print_json, say, show, status_text, store, table
from broke.errors import InvalidInputError, UsageProblem

SET_STATUSES = ("healthy", "cooldown", "blocked")
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


def _health_rows(section: str, names: list[str]) -> list[dict]:
    from broke.catalog import local_model_name
    from broke.health import HealthStore

    health = HealthStore(store().home).load()
    now = time.time()
    records = getattr(health, section)
    rows = []
    for name in sorted(set(names) | set(records)):
        record = records.get(name)
        if section == "models" and local_model_name(name):
            record = health.backend_record(name, local_model_name(name))  # a local model: its worker counts
        rows.append({
            "name": name,
            "status": record.effective(now) if record else "unknown",
            "until": record.until if record and record.until and record.until > now else None,
            "reason": record.reason if record else "",
            "failures": record.failures if record else 0,
        })
    return rows


def _set_health(section: str, name: str, status: str, seconds: float | None, provider: str | None) -> None:
    import math

    from broke.health import MANUAL, HealthTransitions

    if status not in SET_STATUSES:
        raise UsageProblem(f"status must be one of {', '.join(SET_STATUSES)}, got '{status}'")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise UsageProblem(f"--for takes a number of seconds above 0, got {seconds}")
    home = store().home
    transitions = HealthTransitions(home)
    until = transitions.set_by_hand(section, name, status, seconds)
    event: dict[str, object] = {"event": "manual", "reason": MANUAL, "status": status}
    if section == "keys":
        from broke.control.runfiles import key_ref
        from broke.keys import provider_env

        value = provider_env(home / ".env").get(name)
        event.update(provider=provider, key_ref=key_ref(value) if value else None)
    else:
        event.update(backend=name)
    transitions.log.write(**event)
    say(f"{esc(name)}: {status}" + (f" for {until - time.time():.0f}s" if until else ""))


def key_state(
    action: str | None = typer.Argument(None, metavar="[set]"),
    key: str | None = typer.Argument(None, metavar="[KEY]", help="A key variable, e.g. OPENROUTER_API_KEY_2."),
    new_status: str | None = typer.Argument(None, metavar="[healthy|cooldown|blocked]"),
    seconds: float | None = FOR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every key's state (names only, never values), or set one by hand."""
    from broke.catalog import load_catalog
    from broke.keys import key_pool, provider_env

    catalog = load_catalog()
    env = provider_env(store().home / ".env")
    prefixes = {name: info.key_env for name, info in catalog.providers.items() if info.key_env}
    for backend in store().load().backends.values():
        if backend.key_env:
            prefixes[backend.provider + ":" + backend.key_env] = backend.key_env
    owner = {k: p.split(":")[0] for p, prefix in prefixes.items() for k in key_pool(prefix, env)}
    if action is not None:
        if action != "set" or not key or not new_status:
            raise UsageProblem("use `broke key-state` or `broke key-state set KEY healthy|cooldown|blocked`")
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise InvalidInputError(f"'{key}' is not a key variable name (such as OPENROUTER_API_KEY_2)")
        _set_health("keys", key, new_status, seconds, owner.get(key))
        return
    rows = _health_rows("keys", list(owner))
    for row in rows:
        row["provider"] = owner.get(row["name"], "?")
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
        None, "--mode", help="ordered | round_robin | fastest (by measured speed) | cheapest (by expected cost)"),
    order: str | None = typer.Option(None, "--order", help="Backends to try first, in order: B1,B2"),
    cooldown_last: bool | None = typer.Option(
        None, "--cooldown-last/--no-cooldown-last",
        help="Try candidates in cooldown after every usable one (the default; --no-cooldown-last fails fast; "
             "blocked and auth-failed: never)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show model policies, or change one slot's."""
    from broke import changes
    from broke.catalog import load_catalog
    from broke.state.model import ModelPolicy
    from broke.state.schema import unstructure

    if slot is not None and (mode is not None or order is not None or cooldown_last is not None):
        state = changes.set_model_policy(store(), slot, mode=mode, order=_split(order),
                                         cooldown_last=cooldown_last)
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
    t = table("slot", "mode", "order", "cooldown")
    for s, policy in rows.items():
        t.add_row(s, policy["mode"], esc(", ".join(policy["order"])) or "-",
                  "tried last" if policy["cooldown_last"] else "never tried")
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
    new_status: str | None = typer.Argument(None, metavar="[healthy|cooldown|blocked]"),
    seconds: float | None = FOR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every routed backend's state, or set one by hand."""
    from broke.routing.backends import backend_chain

    state = store().load()
    if action is not None:
        if action != "set" or not backend or not new_status:
            raise UsageProblem("use `broke model-state` or `broke model-state set BACKEND healthy|cooldown|blocked`")
        from broke.catalog import load_catalog
        from broke.changes import check_backend

        check_backend(backend, state, load_catalog())
        _set_health("models", backend, new_status, seconds, None)
        return
    routed = sorted({b for slot in state.slots for b, _ in backend_chain(slot, state)[0]})
    rows = _health_rows("models", routed)
    if as_json:
        print_json(rows)
        return
    _show_health(rows, "backend")


def register(app: typer.Typer) -> None:
    app.command("key-policy")(key_policy)
    app.command("key-state")(key_state)
    app.command("model-policy")(model_policy)
    app.command("model-state")(model_state)
