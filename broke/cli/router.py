"""`router show|tier|thresholds|calibrate|eval|train|learn|forget|judge|record|outcomes`, `estimate`,
`feedback`: the complexity router for `auto`, and the outcome records it learns from."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from broke.cli.output import JSON_OPTION, console, esc, print_json, say, show, store, table
from broke.errors import UsageProblem

if TYPE_CHECKING:
    from broke.state.model import JudgeConfig, RecordConfig

router_app = typer.Typer(no_args_is_help=True, help="The complexity router: tiers and thresholds for `auto`.")


@router_app.command("show")
def router_show(as_json: bool = JSON_OPTION) -> None:
    """Tiers, their backends, and the p_strong at which each starts."""
    from broke.router.decide import learning_summary
    from broke.router.judging import spending
    from broke.state.model import TIERS
    from broke.state.schema import unstructure

    s = store()
    router = s.load().router
    learning = learning_summary(s.home)
    judged, spent, needs = spending(s.home)
    if as_json:
        print_json({**unstructure(router), "learned": learning,
                    "judging": {"judged": judged, "spent_usd": spent,
                                "stopped": stopped(router.judge, spent, needs)}})
        return
    starts = {"basic": 0.0, "balanced": router.balanced_from, "premium": router.premium_from}
    t = table("tier", "from p_strong", "backends")
    for tier in TIERS:
        t.add_row(tier, f"{starts[tier]:.3f}", esc(", ".join(router.tiers.get(tier, []))) or "[dim]none[/]")
    show(t)
    if learning["labels"] and learning["prior_strength"] is None:
        say(f"learned from {learning['labels']} labels, which tell prompts apart no better than the shipped prior "
            "does: p_strong stays the prior's until more labels say otherwise")
    elif learning["labels"]:
        origins = ", ".join(f"{n} from {origin}" for origin, n in sorted(learning["by_origin"].items()))
        say(f"learned from {learning['labels']} labels ({origins}); near them the labels carry "
            f"{learning['mean_weight']:.0%} of p_strong on average, the shipped prior the rest")
    else:
        say("learned from no labels: p_strong is the shipped prior's (`broke router learn FILE`, `broke feedback`)")
    say(judging_line(router.judge, judged, spent, needs))
    say(recording_line(router.record))


def recording_line(record: RecordConfig) -> str:
    """What `router show` and `router record` say about outcome records."""
    from broke.router.outcomes import PROMPT_CHARS

    if "*" in record.slots:
        which = "`auto` and every other slot"
    elif record.slots:
        which = f"`auto` and slot{'s' if len(record.slots) > 1 else ''} {esc(', '.join(record.slots))}"
    else:
        which = "`auto` only"
    text = (f"kept (cut at {PROMPT_CHARS:,} characters)" if record.prompt_text
            else "not kept (the prompt's vector only)")
    return f"outcome records: {which}; prompt text {text}"


@router_app.command("record")
def router_record(
        slots: list[str] | None = typer.Option(None, "--slot", metavar="NAME",
                                               help="Record requests to this slot too (repeat it; replaces the "
                                                    "list)."),
        every: bool = typer.Option(False, "--all", help="Record requests to every slot."),
        auto_only: bool = typer.Option(False, "--auto-only", help="Record `auto`'s requests only (the default)."),
        prompt_text: str | None = typer.Option(None, "--prompt-text", metavar="on|off",
                                               help="Keep the prompt's text in new records (default off)."),
) -> None:
    """Which requests get outcome records besides `auto`'s (always), and whether they keep the prompt's text."""
    from broke import changes
    from broke.router import outcomes

    chosen = [name for name, given in (("--slot", bool(slots)), ("--all", every), ("--auto-only", auto_only))
              if given]
    if len(chosen) > 1:
        raise UsageProblem(f"give one of --slot, --all or --auto-only, not {' and '.join(chosen)}")
    if prompt_text not in (None, "on", "off"):
        raise UsageProblem(f"--prompt-text is on or off, not '{prompt_text}'")
    if not chosen and prompt_text is None:
        raise UsageProblem("give --slot NAME (repeatable), --all or --auto-only, and/or --prompt-text on|off")
    wanted = list(slots or []) if not every else [changes.EVERY_SLOT]
    s = store()
    state = changes.set_recording(s, wanted if chosen else None, None if prompt_text is None else prompt_text == "on")
    say(f"{recording_line(state.router.record)} (generation {state.generation})")
    kept = outcomes.count(s.home, outcomes.PROMPTS_TABLE) if prompt_text == "off" else 0
    if kept:
        say(f"{kept} records keep the prompt text they stored; `broke router outcomes --forget` deletes them")


def stopped(judge: JudgeConfig, spent: float, needs: float) -> bool:
    """Whether judging has stopped for its budget: what is left is less than a judgement holds."""
    return bool(judge.slot) and judge.budget_usd - spent < max(needs, 1e-9)


def judging_line(judge: JudgeConfig, judged: int, spent: float, needs: float) -> str:
    """What `router show` says about judged samples."""
    if not judge.slot:
        return f"judging: off ({judged} judged, ${spent:.4f} spent; `broke router judge --slot SLOT`)"
    used = " — the budget is used: judging has stopped" if stopped(judge, spent, needs) else ""
    return (f"judging: {judge.rate:.0%} of `auto` requests by slot {esc(judge.slot)}, {judged} judged, "
            f"${spent:.4f} of ${judge.budget_usd:.2f} spent{used}")


@router_app.command("judge")
def router_judge(slot: str | None = typer.Option(None, "--slot", help="The slot that judges."),
                 rate: float | None = typer.Option(None, "--rate", help="Share of `auto` requests judged, 0..1."),
                 budget: float | None = typer.Option(None, "--budget-usd", help="USD judging may spend in all."),
                 off: bool = typer.Option(False, "--off", help="Stop judging.")) -> None:
    """Judge a sample of `auto` requests: ask the other tier too and let the judge slot say which was enough."""
    from broke import changes

    if off:
        if slot is not None or rate is not None or budget is not None:
            raise UsageProblem("--off takes no --slot, --rate or --budget-usd")
        changes.judge_off(store())
        say("judging: off (labels it gave stay; `broke router forget` drops them)")
        return
    if slot is None or rate is None or budget is None:
        raise UsageProblem("give --slot SLOT --rate R --budget-usd N (or --off)")
    state = changes.set_judge(store(), slot, rate, budget)
    say(f"judging {rate:.0%} of `auto` requests with slot {esc(slot)}, at most ${budget:.2f} in all "
        f"(generation {state.generation})")


@router_app.command("tier")
def router_tier(tier: str = typer.Argument(..., metavar="basic|balanced|premium"),
                backends: list[str] | None = typer.Argument(None, metavar="[BACKEND…]",
                                                            help="Backends in order; none clears the tier.")) -> None:
    """Set a tier's backends (requests that land in it try them in order, then the tiers above)."""
    from broke import changes

    state = changes.set_tier(store(), tier, list(backends or []))
    say(f"tier {tier}: {esc(', '.join(state.router.tiers.get(tier, []))) or 'cleared'} "
        f"(generation {state.generation})")


@router_app.command("thresholds")
def router_thresholds(balanced: float | None = typer.Option(None, "--balanced", help="p_strong where balanced starts."),
                      premium: float | None = typer.Option(None, "--premium",
                                                           help="p_strong where premium starts.")) -> None:
    """Set where the tiers start on p_strong (see also `broke router calibrate`)."""
    from broke import changes

    state = changes.set_thresholds(store(), balanced_from=balanced, premium_from=premium)
    say(f"balanced from {state.router.balanced_from:.3f}, premium from {state.router.premium_from:.3f} "
        f"(generation {state.generation})")




@router_app.command("calibrate")
def router_calibrate(
        strong_share: float = typer.Option(..., "--strong-share", min=0.0, max=1.0,
                                           help="Share of the reference prompts to send to premium."),
        own: bool = typer.Option(False, "--own", help="Calibrate on your own `auto` requests (their outcome "
                                                      "records) instead of the shipped reference prompts."),
) -> None:
    """Set the thresholds so about STRONG_SHARE of a reference prompt set goes to premium (RouteLLM-style)."""
    from broke import changes
    from broke.router.data import reference_prompts
    from broke.router.decide import own_p_strong
    from broke.router.learned import load
    from broke.router.tiers import calibrate, calibrate_scores

    s = store()
    with console().status("calibrating"):
        thresholds = (calibrate_scores(strong_share, own_p_strong(s.home)) if own
                      else calibrate(strong_share, reference_prompts(), load(s.home)))
    state = changes.set_thresholds(s, balanced_from=thresholds.balanced_from, premium_from=thresholds.premium_from)
    say(f"premium from p_strong {thresholds.premium_from:.3f}, balanced from {thresholds.balanced_from:.3f} "
        f"(generation {state.generation})")


@router_app.command("eval")
def router_eval(data: Path | None = typer.Option(None, "--data", help="JSONL of {prompt, weak, strong}."),
                plot: Path | None = typer.Option(
                    None, "--plot", metavar="FILE.png",
                    help="Also draw the quality-vs-strong-share curve (needs matplotlib)."),
                as_json: bool = JSON_OPTION) -> None:
    """APGR and CPT(50%), CPT(80%) on labelled prompts (default: the shipped held-out split)."""
    from dataclasses import asdict

    from broke.router.decide import evaluate_labelled, plot_quality

    if plot is not None:
        from broke.plotting import check_target

        check_target(plot.expanduser())
    with console().status("evaluating"):
        quality = evaluate_labelled(store().home, data)
    if as_json:
        print_json(asdict(quality))
    else:
        say(f"{quality.n} prompts: APGR {quality.apgr:.3f} (random ≈ 0.5), CPT(50%) {quality.cpt50:.1%}, "
            f"CPT(80%) {quality.cpt80:.1%}; weak-only {quality.weak_quality:.3f}, "
            f"strong-only {quality.strong_quality:.3f}")
        t = table("strong share", "quality")
        for point in quality.curve:
            t.add_row(f"{point.strong_share:.1%}", f"{point.quality:.3f}")
        show(t)
    if plot is not None:
        path = plot_quality(quality, plot.expanduser())
        if not as_json:
            say(f"plot written to {esc(str(path))}")


@router_app.command("train")
def router_train() -> None:
    """Fit the router again from the shipped data (it is fitted on first use anyway)."""
    from broke.router.decide import retrain

    with console().status("training the router"):
        retrain(store().home)
    say("router trained")


@router_app.command("learn")
def router_learn(data: Path = typer.Argument(..., metavar="FILE",
                                            help='JSONL: {"prompt", "weak", "strong"} (scores 0..1) or '
                                                 '{"prompt", "winner": "weak|strong|tie"} per line.')) -> None:
    """Learn from an outcome set: `auto` blends the shipped prior with what these labels say near each prompt."""
    from broke.router.decide import learn_file, learning_summary

    s = store()
    with console().status("learning"):
        count, _ = learn_file(s.home, data.expanduser())
    summary = learning_summary(s.home)
    say(f"learned {count} labelled prompts from {esc(str(data))}; the router now learns from "
        f"{summary['labels']} labels (`broke router show`)")


@router_app.command("forget")
def router_forget() -> None:
    """Forget every label: `auto` goes back to the shipped prior."""
    from broke.router.decide import forget_learning

    say(f"forgot {forget_learning(store().home)} labels; p_strong is the shipped prior's again")


@router_app.command("outcomes")
def router_outcomes(as_json: bool = JSON_OPTION,
                    export: Path | None = typer.Option(None, "--export", metavar="FILE",
                                                       help="Write every record to FILE as JSON lines."),
                    forget: bool = typer.Option(False, "--forget", help="Delete every outcome record."),
                    last: int = typer.Option(20, "--last", min=1, help="Records to show (newest first).")) -> None:
    """The outcome records of routed requests: slot, tier, backend, p_strong, feedback (and the prompt's text with
    --json or --export, where `broke router record --prompt-text on` kept it)."""
    from broke.router import outcomes

    home = store().home
    if forget:
        say(f"forgot {outcomes.forget(home)} outcome records and the prompt text they kept (labels stay; "
            "`broke router forget` drops them)")
        return
    if export is not None:
        say(f"{outcomes.export(home, export.expanduser())} outcome records written to {esc(str(export))}")
        return
    records = list(outcomes.rows(home, last))
    if as_json:
        print_json(records)
        return
    t = table("request", "time", "client", "slot", "tier", "backend", "p_strong", "ms", "tokens", "status",
              "feedback")
    for r in records:
        t.add_row(r["request_id"], time.strftime("%H:%M:%S", time.localtime(r["time"])), esc(r["client"]),
                  esc(r["slot"]), r["tier"] or "-", esc(r["backend"]),
                  "-" if r["p_strong"] is None else f"{r['p_strong']:.3f}",
                  f"{r['latency_ms'] or 0:.0f}", "-" if r["tokens"] is None else str(r["tokens"]), str(r["status"]),
                  r["feedback"] or "")
    show(t)
    texts = outcomes.count(home, outcomes.PROMPTS_TABLE)
    say(f"{outcomes.count(home)} outcome records in all" + (f", {texts} with their prompt text (--json, --export)"
                                                            if texts else ""))


def feedback(request_id: str = typer.Argument(..., help="The answer's x-broke-request-id."),
             verdict: str = typer.Argument(..., metavar="good|bad")) -> None:
    """Say whether a routed answer was good enough: on basic or balanced, `auto` learns from it."""
    from broke.router.outcomes import give_feedback

    given = give_feedback(store().home, request_id, verdict)
    if given.learned:
        say(f"{request_id}: {verdict}; the router learned from it")
    else:
        say(f"{request_id}: {verdict}; recorded ({esc(given.why_not)})")


def estimate(prompt: str | None = typer.Argument(None, help="The prompt (default: read stdin)."),
             batch: Path | None = typer.Option(None, "--batch", help="JSONL file: one {id, prompt} per line."),
             as_json: bool = JSON_OPTION) -> None:
    """Estimate a prompt's complexity: dimensions, p_strong, tier and quality temperature."""
    import sys

    from broke.router.decide import estimate_batch, estimate_prompt

    s = store()
    state = s.load()
    if batch is not None:
        try:
            lines = batch.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageProblem(f"cannot read {batch}: {exc.strerror}") from None
        for result in estimate_batch(s.home, lines, state, str(batch)):
            sys.stdout.write(json.dumps(result) + "\n")
        return
    text = prompt if prompt is not None else sys.stdin.read()
    if not text.strip():
        raise UsageProblem("give a PROMPT, pipe one on stdin, or use --batch FILE")
    result = estimate_prompt(s.home, text, state)
    if as_json:
        print_json(result)
        return
    colour = {"green": "green", "yellow": "yellow", "orange": "dark_orange", "red": "red"}[result["temperature"]]
    say(f"tier [bold]{result['tier']}[/]  p_strong {result['p_strong']:.3f}  "
        f"temperature [{colour}]{result['temperature']}[/]")
    say(f"prompt complexity {result['prompt_complexity']:.3f} · answer complexity "
        f"{result['answer_complexity']:.3f} · code bias {result['code_bias']:.3f}")


def register(app: typer.Typer) -> None:
    app.add_typer(router_app, name="router")
    app.command("estimate")(estimate)
    app.command("feedback")(feedback)
