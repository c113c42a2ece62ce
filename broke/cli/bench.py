"""`benchmark-sequential`, `export-baseline`, `baseline import|list|show|compare`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from broke.cli.output import JSON_OPTION, console, esc, print_json, say, show, store, table

if TYPE_CHECKING:
    from broke.bench.sequential import Events

baseline_app = typer.Typer(help="Baselines: measured model speeds, from this machine and others.",
                           no_args_is_help=True)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _gib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**30:.2f} GiB"


def _display_events(progress) -> Events:
    """Events that drive a rich progress display: one bar per model, advanced per run."""
    from broke.bench.sequential import Events

    tasks: dict[str, int] = {}

    def started(target, total: int) -> None:
        tasks[target.backend] = progress.add_task(f"{target.backend}: starting", total=total)

    def step(target, what: str) -> None:
        progress.update(tasks[target.backend], description=f"{esc(target.backend)}: {esc(what)}")

    def run_done(target, prompt, run) -> None:
        state = f"[red]error[/] {esc(run.error[:60])}" if run.error else (
            f"{prompt.name} {run.decode_tps:,.0f} tok/s" if run.decode_tps else prompt.name)
        progress.update(tasks[target.backend], advance=1, description=f"{esc(target.backend)}: {state}")

    def done(target, result: dict) -> None:
        summary = result["summary"]
        word = ("[green]done[/]" if result["complete"] else "[red]failed[/]" if not result["prompts"]
                else "[yellow]partial[/]")
        progress.update(tasks[target.backend], description=(
            f"{esc(target.backend)}: {word} · decode {_num(summary['decode_tps'])} tok/s · "
            f"first token {_ms(summary['ttft_s'])}"))

    return Events(started, step, run_done, done)


def benchmark_sequential(
    add: list[str] | None = typer.Option(None, "--add", metavar="MODEL",
                                         help="A local model to measure (repeat). Default: every local model."),
    backend: list[str] | None = typer.Option(None, "--backend", metavar="ID",
                                             help="A backend to measure through the running gateway (repeat)."),
    suite_name: str = typer.Option("quick", "--suite", help="quick or standard."),
    runs: int | None = typer.Option(None, "--runs", min=1, max=100, help="Runs of each prompt (quick 2, standard 5)."),
    label: str = typer.Option("", "--label", help="A name for this machine in comparisons."),
    allow_shared: bool = typer.Option(False, "--allow-shared",
                                      help="Measure even while other local workers run (the record says so)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Measure local models one at a time (load, first token, prefill and decode speed, peak memory)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from broke.bench.sequential import benchmark, plan
    from broke.bench.suite import DEFAULT_RUNS, SUITES
    from broke.errors import BrokeError, UsageProblem

    if suite_name not in SUITES:
        raise UsageProblem(f"--suite must be one of {', '.join(SUITES)}")
    s = store()
    state = s.load()
    targets = plan(state, add or [], backend or [])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console(), disable=as_json) as progress:
        outcome = benchmark(s.home, state, targets, suite_name=suite_name, runs=runs or DEFAULT_RUNS[suite_name],
                            label=label, allow_shared=allow_shared, events=_display_events(progress))
    if as_json:
        print_json({**outcome.record, "path": str(outcome.path), "interrupted": outcome.interrupted})
    else:
        _models_table(outcome.record)
        say(f"baseline [bold]{outcome.record['id']}[/] saved to {esc(str(outcome.path))}")
    if outcome.interrupted:
        say(f"[yellow]interrupted:[/] kept the results of {len(outcome.record['models'])} model(s)")
        raise typer.Exit(130)
    if outcome.failed:
        raise BrokeError(f"{len(outcome.failed)} of {len(outcome.record['models'])} model(s) could not be "
                         f"measured ({', '.join(outcome.failed)}); the baseline keeps the others' figures")


def _models_table(record: dict) -> None:
    t = table("model", "where", "load", "first token", "prefill tok/s", "decode tok/s", "peak memory", "errors",
              title=f"{record['suite']} suite, {record['runs']} run(s) per prompt")
    for model in record["models"]:
        summary = model["summary"]
        errors = str(len(model["errors"])) if model["errors"] else "[green]0[/]"
        load = _num(model["load_s"], 2) + ("" if model["load_s"] is None else " s")
        t.add_row(esc(model["backend"]), model["where"], load,
                  _ms(summary["ttft_s"]), _num(summary["prefill_tps"]), _num(summary["decode_tps"]),
                  _gib(model["peak_memory_bytes"]), errors)
    show(t)
    for model in record["models"]:
        for error in model["errors"][:3]:
            say(f"[red]error[/] {esc(model['backend'])}: {esc(error)}")


def export_baseline(output: Path = typer.Option(..., "-o", "--output", help="The file to write (FILE.json)."),
                    record_id: str | None = typer.Option(
                        None, "--id", help="Which baseline (default: the newest of this machine).")) -> None:
    """Write a baseline as a shareable file: no paths of this machine, no user names."""
    from broke import baselines
    from broke.machine import hardware

    home = store().home
    record = baselines.find(home, record_id, machine_id=None if record_id else hardware()["id"])
    path = baselines.export(record, output.expanduser())
    say(f"baseline {record['id']} ({len(record['models'])} model(s)) written to {esc(str(path))}")


@baseline_app.command("import")
def baseline_import(files: list[Path] = typer.Argument(..., metavar="FILE...", help="Baseline files (JSON).")) -> None:
    """Add baselines from other machines (or this one) to the local database; a bad file imports nothing."""
    from broke.baselines import import_files

    added, present = import_files(store().home, files)
    say(f"imported {len(added)} baseline(s)" + (f": {', '.join(added)}" if added else "")
        + (f"; already had {', '.join(present)}" if present else ""))


@baseline_app.command("list")
def baseline_list(as_json: bool = JSON_OPTION) -> None:
    """The baselines in the local database, oldest first."""
    from broke.baselines import stored
    from broke.machine import hardware, machine_label

    records = [s.record for s in stored(store().home)]
    if as_json:
        print_json([{"id": r["id"], "created_at": r["created_at"], "machine": r["machine"], "suite": r["suite"],
                     "complete": r["complete"], "models": [m["backend"] for m in r["models"]]} for r in records])
        return
    if not records:
        say("no baselines yet; `broke benchmark-sequential` measures this machine's models")
        return
    here = hardware()["id"]
    t = table("id", "created", "machine", "suite", "models", "complete")
    for r in records:
        machine = esc(machine_label(r["machine"])) + (" [green](this machine)[/]" if r["machine"]["id"] == here else "")
        t.add_row(r["id"], r["created_at"], machine, r["suite"], esc(", ".join(m["backend"] for m in r["models"])),
                  "yes" if r["complete"] else "[yellow]no (interrupted)[/]")
    show(t)


@baseline_app.command("show")
def baseline_show(record_id: str | None = typer.Argument(None, metavar="ID", help="Default: the newest."),
                  as_json: bool = JSON_OPTION) -> None:
    """One baseline: machine, software, and every model's per-prompt figures (median, min–max)."""
    from broke.baselines import find
    from broke.machine import machine_label

    record = find(store().home, record_id)
    if as_json:
        print_json(record)
        return
    m, sw = record["machine"], record["software"]
    say(f"[bold]{record['id']}[/] {record['created_at']} · {esc(machine_label(m))} · {m['os']} {esc(m['os_release'])} "
        f"{m['arch']} · {m['accelerator']} · mlx {sw['mlx'] or '-'}, mlx-lm {sw['mlx_lm'] or '-'}, broke {sw['broke']}")
    _models_table(record)
    t = table("model", "prompt", "prompt tok", "out tok", "first token", "prefill tok/s", "decode tok/s", "errors")

    def cell(figures: dict | None, render) -> str:
        if not figures:
            return "-"
        return f"{render(figures['median'])} [dim]({render(figures['min'])}–{render(figures['max'])})[/]"

    for model in record["models"]:
        for p in model["prompts"]:
            t.add_row(esc(model["backend"]), p["name"], cell(p["prompt_tokens"], lambda v: f"{v:.0f}"),
                      cell(p["completion_tokens"], lambda v: f"{v:.0f}"), cell(p["ttft_s"], _ms),
                      cell(p["prefill_tps"], _num), cell(p["decode_tps"], _num), str(p["errors"]))
    show(t)


@baseline_app.command("remove")
def baseline_remove(
        record_id: str = typer.Argument(..., metavar="ID", help="A baseline id (or a unique prefix)."),
) -> None:
    """Delete a baseline from the local database."""
    from broke.baselines import remove

    say(f"removed baseline {remove(store().home, record_id)}")


@baseline_app.command("compare")
def baseline_compare(metric: str = typer.Option("decode", "--metric", help="decode, prefill, ttft, load or memory."),
                     plot: Path | None = typer.Option(None, "--plot", metavar="FILE.png",
                                                      help="Also draw the table as a bar chart (needs matplotlib)."),
                     as_json: bool = JSON_OPTION) -> None:
    """A table of models × machines from every baseline (the newest figure of each pair)."""
    from broke.baselines import METRICS, compare

    if plot is not None:
        from broke.plotting import check_target

        check_target(plot.expanduser())
    models, machines, cells = compare(store().home, metric)
    _, unit, higher = METRICS[metric]
    if as_json:
        print_json({"metric": metric, "unit": unit, "models": models, "machines": machines,
                    "cells": [{"model": a, "machine": b, "value": v} for (a, b), v in cells.items()]})
    elif not cells:
        say("no figures to compare yet; `broke benchmark-sequential`, or `broke baseline import FILE`")
    else:
        t = table("model", *[esc(m) for m in machines],
                  title=f"{metric} ({unit}, {'higher' if higher else 'lower'} is better)")
        for model in models:
            t.add_row(esc(model), *[_num(cells.get((model, m)), 3 if unit != "tok/s" else 1) for m in machines])
        show(t)
    if plot is not None and cells:
        from broke.plotting import bar_plot

        series = {m: [cells.get((model, m), float("nan")) for model in models] for m in machines}
        path = bar_plot(plot.expanduser(), groups=models, series=series, title=f"{metric} by model and machine",
                        ylabel=unit)
        if not as_json:
            say(f"plot written to {esc(str(path))}")


def register(app: typer.Typer) -> None:
    app.command("benchmark-sequential")(benchmark_sequential)
    app.command("export-baseline")(export_baseline)
    app.add_typer(baseline_app, name="baseline")
