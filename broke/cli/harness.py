"""`harness run|evaluate|show|list|set|lanes|checklist`: agent runs recorded, reviewed and judged."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import typer

from broke.cli.launch import FORCE_OPTION, PASS_THROUGH, SANDBOX_OPTION
from broke.cli.output import JSON_OPTION, esc, fail, print_json, say, show, store, table

app = typer.Typer(help="Harness mode: every agent run leaves a ledger and gets an independent verdict.",
                  no_args_is_help=True)
POLICY_OPTION = typer.Option(None, "--policy", metavar="P",
                             help="off, throughput, balanced or high_assurance (default: `broke harness set`).")
RISK_OPTION = typer.Option("normal", "--risk", metavar="R", help="low, normal or high.")


def _err(message: str) -> None:
    typer.echo(f"broke: {message}", err=True)  # stdout belongs to the agent


@app.command("run", context_settings=PASS_THROUGH,
             options_metavar="[--policy P] [--sandbox S] [--task T] [--risk R] [--force] -- COMMAND [ARGS]...")
def run(ctx: typer.Context, policy: str | None = POLICY_OPTION, sandbox: str | None = SANDBOX_OPTION,
        task: str | None = typer.Option(None, "--task", metavar="T", help="The task, when broke cannot read "
                                        "it from the client's arguments (claude -p T, codex exec T)."),
        risk: str = RISK_OPTION, force: bool = FORCE_OPTION) -> None:
    """Run COMMAND (claude, codex, or any command) as a recorded, reviewed run.

    Exits with the client's status if it failed, else 0 when the verdict accepts and 3 when it does not.
    """
    from broke.harness.run import RunOptions, harness_run

    args = list(ctx.args)
    if args[:1] == ["--"]:
        args = args[1:]
    options = RunOptions(args, policy, sandbox, task, risk, force)
    result = harness_run(store().home, options, cwd=Path.cwd(), environ=os.environ, progress=_err)
    if not result.complete:
        _err(f"run {result.run_id}: incomplete, the client was stopped (status {result.exit_code}); "
             f"`broke harness show {result.run_id}`")
    elif result.decision is not None:
        lanes = ", ".join(f"{lane} {r.verdict}{' (cached)' if r.cached else ''}" for lane, r in result.lanes.items())
        _err(f"run {result.run_id}: {result.decision.verdict.name}" + (f" ({lanes})" if lanes else "")
             + (f" after {result.retries} retr{'y' if result.retries == 1 else 'ies'}" if result.retries else ""))
        for reason in result.decision.reasons:
            _err(f"  {reason}")
    raise typer.Exit(result.status)


@app.command("evaluate")
def evaluate(worker: str = typer.Option("ACCEPT", "--worker", metavar="V", help="The worker lane's verdict."),
             verifier: str | None = typer.Option(None, "--verifier", metavar="V",
                                                 help="The verifier's verdict (or DEGRADED); omitted: ask it."),
             adversary: str | None = typer.Option(None, "--adversary", metavar="V",
                                                  help="The adversary's verdict (or DEGRADED); omitted: ask it."),
             risk: str = RISK_OPTION, retries: int = typer.Option(0, "--retries", min=0, metavar="N"),
             policy: str | None = POLICY_OPTION,
             tests_failed: bool = typer.Option(False, "--tests-failed", help="Check: the last tests failed."),
             violation: bool = typer.Option(False, "--boundary-violation", help="Check: a boundary violation."),
             task: str | None = typer.Option(None, "--task", metavar="T", help="Ask the lanes about this task."),
             diff: Path | None = typer.Option(None, "--diff", metavar="FILE", help="The change, as a diff."),
             tests: Path | None = typer.Option(None, "--tests", metavar="FILE", help="The tests' output."),
             as_json: bool = JSON_OPTION) -> None:
    """The verdict the algebra gives for lane verdicts and checks under a policy (see the README's table)."""
    from broke.errors import UsageProblem
    from broke.harness.evidence import given_evidence
    from broke.harness.verdict import Checks, check_policy, combine, parse_lane

    st = store()
    chosen = check_policy(policy or st.load().harness.policy)
    lanes: dict[str, Any] = {"verifier": verifier, "adversary": adversary}
    asked: dict[str, Any] = {}
    if None in lanes.values():
        if task is None:
            raise UsageProblem("give --verifier and --adversary verdicts, or --task (with --diff, --tests) "
                               "for the lanes to review")
        from broke.harness.run import review_evidence

        texts = {}
        for name, path in (("diff", diff), ("tests", tests)):
            try:
                texts[name] = path.read_text(encoding="utf-8", errors="replace") if path else ""
            except OSError as exc:
                raise UsageProblem(f"--{name} {path}: {exc.strerror}") from None
        asked = review_evidence(st.home, given_evidence(task, texts["diff"], texts["tests"], tests_failed), _err)
        lanes = {k: v if v is not None else asked[k].verdict for k, v in lanes.items()}
    inputs = {"worker": parse_lane(worker), **{k: parse_lane(v) for k, v in lanes.items()}}
    decision = combine(chosen, **inputs, checks=Checks(tests_failed, violation), risk=risk, retries=retries)
    if as_json:
        print_json({"verdict": decision.verdict.name, "reasons": list(decision.reasons), "policy": chosen,
                    "risk": risk, "retries": retries, "inputs": {k: getattr(v, "name", v) for k, v in inputs.items()},
                    "lanes": {k: vars(v) for k, v in asked.items()}})
        return
    say(f"[bold]{decision.verdict.name}[/] under {chosen} (risk {risk}, {retries} retries)")
    for lane, result in asked.items():
        say(f"  {lane} ({esc(result.slot)}): {result.verdict} {esc(result.summary or result.error)}")
        for finding in result.findings:
            say(f"    - {esc(finding)}")
    for reason in decision.reasons:
        say(f"  {esc(reason)}")


def _when(ts: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S")
    except (TypeError, ValueError):
        return "?"


def _detail(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "command":
        return f"{event.get('tool')} {' '.join(map(str, event.get('args') or []))} → exit {event.get('exit')} " \
               f"({event.get('duration_ms')} ms)"
    if kind == "request":
        return f"{event.get('role')} {event.get('slot')} → {event.get('backend')} {event.get('status')} " \
               f"{event.get('request_id')}"
    if kind == "review":
        lanes = ", ".join(f"{k} {v.get('verdict')}" for k, v in (event.get("lanes") or {}).items())
        return f"{event.get('verdict')}" + (f" ({lanes})" if lanes else "")
    if kind == "checkpoint":
        done = "complete" if event.get("complete") else f"INCOMPLETE: {event.get('why')}"
        return f"exit {event.get('exit')}, {done}"
    if kind == "started":
        plan = event.get("plan") or {}
        return f"{event.get('client')} in {event.get('cwd')}; shimmed: {', '.join(plan.get('shimmed') or [])}"
    if kind == "retry":
        return f"continuing with {len(event.get('findings') or [])} finding(s)"
    rest = {k: v for k, v in event.items() if k not in ("ts", "kind")}
    return json.dumps(rest, default=str)[:200]


@app.command("show")
def show_run(run_id: str | None = typer.Argument(None, metavar="[RUN]", help="A run id or its prefix; "
                                                 "omitted: the latest."), as_json: bool = JSON_OPTION) -> None:
    """A run's timeline: its plan, the commands it ran, its gateway requests, each lane's verdict."""
    from broke.harness.inspect import run_view

    view = run_view(store().home, run_id)
    if as_json:
        print_json(view)
        return
    say(f"[bold]run {view['run']}[/]: {view['status']}" + (f" ({esc(view['why'])})" if view["why"] else "")
        + f", verdict {view['verdict'] or '-'}")
    say(f"task: {esc(view['task'] or '-')}; policy {view['policy']}, sandbox {view['sandbox']}")
    plan = view["plan"] or {}
    say(f"plan: set {', '.join(plan.get('set') or [])}; removed {', '.join(plan.get('removed') or []) or '-'}")
    t = table("time", "event", "detail")
    for event in view["timeline"]:
        t.add_row(_when(event.get("ts")), str(event.get("kind")), esc(_detail(event)))
    show(t)
    for review in view["reviews"]:
        for lane, result in (review.get("lanes") or {}).items():
            say(f"{lane} ({esc(str(result.get('slot')))}): {result.get('verdict')} "
                f"{esc(result.get('summary') or result.get('error') or '')}")
            for finding in result.get("findings") or []:
                say(f"  - {esc(finding)}")
    for problem in view["problems"]:
        say(f"[yellow]note[/]: {esc(problem)}")


@app.command("list")
def list_runs(as_json: bool = JSON_OPTION) -> None:
    """The newest runs: status, verdict, each lane's verdict, commands and requests recorded."""
    from broke.harness.inspect import run_rows

    rows = run_rows(store().home)
    if as_json:
        print_json(rows)
        return
    if not rows:
        say("no harness runs yet; start one with `broke harness run -- COMMAND`")
        return
    t = table("run", "client", "status", "verdict", "lanes", "cmds", "reqs", "task")
    for row in rows:
        lanes = " ".join(f"{k[0]}:{v}" for k, v in row["lanes"].items())
        t.add_row(row["run"], str(row["client"]), row["status"], str(row["verdict"] or "-"), lanes,
                  str(row["commands"]), str(row["requests"]), esc(row["task"][:60]))
    show(t)


@app.command("set")
def set_policy(policy: str = typer.Argument(..., metavar="POLICY",
                                            help="off, throughput, balanced or high_assurance.")) -> None:
    """Set the policy runs are reviewed under when no --policy is given."""
    from broke import changes

    changes.set_harness_policy(store(), policy)
    say(f"harness runs are now reviewed under [bold]{policy}[/]")


@app.command("lanes")
def lanes(verifier: str | None = typer.Option(None, "--verifier", metavar="SLOT"),
          adversary: str | None = typer.Option(None, "--adversary", metavar="SLOT"),
          as_json: bool = JSON_OPTION) -> None:
    """Set (or show) the slots the verifier and adversary lanes ask."""
    from broke import changes

    st = store()
    state = st.load() if verifier is None and adversary is None else \
        changes.set_lanes(st, verifier=verifier, adversary=adversary)
    config = state.harness
    if as_json:
        print_json({"policy": config.policy, "verifier": config.verifier, "adversary": config.adversary})
        return
    say(f"verifier: {config.verifier}\nadversary: {config.adversary}\npolicy: {config.policy}")


@app.command("checklist")
def checklist(as_json: bool = JSON_OPTION) -> None:
    """What a recorded, reviewed, confined run needs here, and whether it is ready."""
    from broke.harness.inspect import checklist as items

    found = items(store().home, os.environ)
    if as_json:
        print_json([{"item": i, "ready": ok, "detail": d} for i, ok, d in found])
        return
    for item, ok, detail in found:
        say(f"{'[green]✓[/]' if ok else '[red]✗[/]'} {item:<10} {esc(detail)}")
    if not all(ok for _, ok, _ in found):
        fail("harness mode is not fully ready; see the items marked ✗")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="harness")
