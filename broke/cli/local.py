"""`local models|add|make-tiny` and `worker start|stop|list|logs`: local MLX models and their workers."""
from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from broke.cli.output import JSON_OPTION, console, esc, print_json, say, show, store, table
from broke.errors import InvalidInputError, UsageProblem

local_app = typer.Typer(no_args_is_help=True, help="Local MLX models: find, register, make a tiny one.")
worker_app = typer.Typer(no_args_is_help=True, help="MLX workers: one mlx_lm.server per local model.")


def _model_dirs(extra: list[Path]) -> list[Path]:
    configured = [Path(p) for p in os.environ.get("BROKE_MODEL_DIRS", "").split(os.pathsep) if p]
    return [store().home / "models", *configured, *extra]


@local_app.command("models")
def local_models(dirs: list[Path] | None = typer.Option(None, "--dir", help="Also look here."),
                 as_json: bool = JSON_OPTION) -> None:
    """Models in the Hugging Face cache and the model directories ($BROKE_HOME/models, $BROKE_MODEL_DIRS)."""
    from dataclasses import asdict

    from broke.local.models import discover

    found = discover(_model_dirs(list(dirs or [])))
    if as_json:
        print_json([asdict(m) for m in found])
        return
    if not found:
        say("no local models found; `broke local add PATH|REPO` or `broke local make-tiny DIR`")
        return
    t = table("model", "size", "quantisation", "type", "mlx-lm can load", "path")
    for m in found:
        loads = "[green]yes[/]" if m.loadable else f"[red]no[/] {esc(m.why_not)}"
        t.add_row(esc(m.name), f"{m.size_bytes / 2**20:.1f} MB", m.quantization, m.model_type, loads, esc(m.path))
    show(t)


@local_app.command("add")
def local_add(source: str = typer.Argument(..., metavar="PATH|REPO", help="A model directory or a hub repo id."),
              name: str | None = typer.Option(None, "--name", help="Model name (backend mlx/NAME)."),
              concurrency: int = typer.Option(0, "--concurrency", min=0,
                                              help="Requests one worker serves at once; more go to the slot's "
                                                   "next candidate (0: mlx-lm's default, 32).")) -> None:
    """Register a local model as backend mlx/NAME (a hub repo is downloaded when the hub is reachable)."""
    from broke import changes
    from broke.local.models import cached_snapshot, download, inspect_model

    path = Path(source).expanduser()
    if path.exists():
        info = inspect_model(path.name, path.resolve())
        if not info.loadable:
            raise UsageProblem(f"{path} cannot be served by mlx-lm: {info.why_not}")
        ref, default_name = str(path.resolve()), path.resolve().name
    else:
        import re

        if source.startswith(("/", ".", "~")) or os.sep + os.sep in source:
            raise InvalidInputError(f"no directory '{source}'")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}", source):
            raise UsageProblem(f"'{source}' is neither a directory nor a hub repo id (org/name)")
        snapshot = cached_snapshot(source)
        if snapshot is None:
            with console().status(f"downloading {source}"):
                snapshot = download(source)
        ref, default_name = source, source
    state = changes.add_local_model(store(), name or default_name, ref, concurrency=concurrency)
    say(f"local model [bold]mlx/{esc(name or default_name)}[/] added (generation {state.generation}); "
        f"`broke swap SLOT mlx/{esc(name or default_name)}` routes to it")


@local_app.command("make-tiny")
def local_make_tiny(directory: Path = typer.Argument(..., metavar="DIR"),
                    answer: str | None = typer.Option(None, "--answer", help="Always reply with this text."),
                    add: str | None = typer.Option(None, "--add", metavar="NAME",
                                                   help="Also register it as mlx/NAME."),
                    layers: int = typer.Option(2, "--layers", min=1, max=64,
                                               help="Transformer layers: more make a slower model."),
                    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random weights.")) -> None:
    """Write a tiny offline model (random, or rigged to always answer TEXT) that mlx-lm loads."""
    from broke import changes
    from broke.local.tiny import make_tiny

    path = make_tiny(directory.expanduser().resolve(), answer=answer, layers=layers, seed=seed)
    say(f"tiny model written to {esc(str(path))}")
    if add:
        changes.add_local_model(store(), add, str(path))
        say(f"local model [bold]mlx/{esc(add)}[/] added")


@worker_app.command("start")
def worker_start(
    model: str = typer.Argument(..., help="NAME or mlx/NAME."),
    port: int | None = typer.Option(None, "--port", help="Port (default: a free one)."),
    replica: bool = typer.Option(False, "--replica", help="Add another worker to the model's pool."),
    advertise: bool = typer.Option(False, "--advertise", help="Announce it on the LAN (DNS-SD) for "
                                                              "`broke node discover`; needs --host and --token."),
    host: str = typer.Option("127.0.0.1", "--host", help="Listen address; beyond loopback needs --token."),
    token: str | None = typer.Option(None, "--token", envvar="BROKE_WORKER_TOKEN",
                                     help="Token other machines must present (or $BROKE_WORKER_TOKEN)."),
) -> None:
    """Start a worker of a local model and wait until it answers."""
    from broke.local.workers import start_worker

    with console().status("starting the worker") as spinner:
        record, started = start_worker(store().home, model, port=port, replica=replica, host=host,
                                       token=token, advertise=advertise, progress=spinner.update)
    where = f"{record.host}:{record.port}" + (" (token required)" if record.exposed else "")
    say(f"worker of [bold]{esc(record.backend)}[/] {'started' if started else 'already running'} "
        f"on {where} (pid {record.pid})")


@worker_app.command("stop")
def worker_stop(model: str | None = typer.Argument(None, help="NAME or mlx/NAME (all its workers)."),
                stop_all: bool = typer.Option(False, "--all", help="Stop every worker.")) -> None:
    """Stop a model's workers (or all): exactly the process groups broke started."""
    from broke.local import workers

    if bool(model) == stop_all:
        raise UsageProblem("give a MODEL or --all")
    done = workers.stop_worker(store().home, model) if model else workers.stop_all(store().home)
    say("\n".join(done) if done else "no workers")


@worker_app.command("list")
def worker_list(as_json: bool = JSON_OPTION) -> None:
    """Workers: model, backend, port, supervisor and server pid, state."""
    from broke.local.workers import inspect_worker, read_workers

    home = store().home
    views = [inspect_worker(home, w) for w in read_workers(home)]
    if as_json:
        print_json([{"model": v.record.name, "backend": v.record.backend, "host": v.record.host,
                     "port": v.record.port, "pid": v.record.pid, "server_pid": v.server_pid, "state": v.state,
                     "model_dir": v.record.model_dir, "log": v.record.log} for v in views])
        return
    if not views:
        say("no workers (`broke worker start MODEL`)")
        return
    t = table("model", "backend", "host", "port", "supervisor pid", "server pid", "state")
    colour = {"ready": "green", "starting": "yellow", "restarting": "yellow", "orphaned": "red", "dead": "red"}
    for v in views:
        w = v.record
        t.add_row(esc(w.name), esc(w.backend), w.host, str(w.port), str(w.pid),
                  str(v.server_pid or "-"), f"[{colour[v.state]}]{v.state}[/]")
    show(t)
    if any(v.state == "orphaned" for v in views):
        say("an orphaned server outlived its supervisor; `broke worker stop MODEL` or `broke stop` ends it")


@worker_app.command("logs")
def worker_logs(model: str = typer.Argument(..., help="NAME or mlx/NAME."),
                follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Print a worker's log (with -f, follow it until Ctrl-C)."""
    import sys

    from broke.errors import NotFoundError
    from broke.local.workers import find_worker

    record = find_worker(store().home, model)
    if record is None:
        raise NotFoundError(f"no worker for {model}; see `broke worker list`")
    with open(record.log, "rb") as fh:
        sys.stdout.write(fh.read().decode("utf-8", "replace"))
        while follow:
            chunk = fh.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
            else:
                time.sleep(0.3)


def register(app: typer.Typer) -> None:
    app.add_typer(local_app, name="local")
    app.add_typer(worker_app, name="worker")
