"""Baseline records under `$BROKE_HOME/baselines/`: save, list, validate, export, import, compare.

A record is schema-versioned JSON (`baseline.schema.json`). Records from other machines come in
by `import`; expected speeds for routing come only from records of this machine.
"""
from __future__ import annotations

import getpass
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import overload

from broke.errors import InvalidInputError, NotFoundError, StateFileError
from broke.fileio import atomic_write
from broke.paths import ensure_dir

SCHEMA_VERSION = 1
KIND = "broke-baseline"
SCHEMA_FILE = Path(__file__).with_name("baseline.schema.json")
METRICS = {  # compare --metric NAME -> (where in a model's record, unit, higher is better)
    "decode": ("decode_tps", "tok/s", True),
    "prefill": ("prefill_tps", "tok/s", True),
    "ttft": ("ttft_s", "s", False),
    "load": ("load_s", "s", False),
    "memory": ("peak_memory_bytes", "GiB", False),
}
_ABSOLUTE_PATH = re.compile(r"(?:(?<=[\s'\"(=:])|^)(?:/|~/|[A-Za-z]:\\)[^\s'\"()]+")


def baselines_dir(home: Path) -> Path:
    return home / "baselines"


def new_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"b-{stamp}-{secrets.token_hex(3)}"


@cache
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def schema_problem(record: object) -> str | None:
    """Why `record` is not a baseline this broke can read (None when it is one)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("kind") != KIND:
        return f"not a broke baseline (kind is {record.get('kind')!r}, expected {KIND!r})"
    version = record.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return (f"made by a newer broke (baseline schema {version}, this broke reads up to "
                f"{SCHEMA_VERSION}); upgrade broke to import it")
    error = next(iter(sorted(_validator().iter_errors(record), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"does not match the baseline schema at {where}: {error.message[:200]}"


@overload
def scrubbed(value: dict[str, object], *, user: str | None = None, home: str | None = None) -> dict[str, object]: ...
@overload
def scrubbed(value: object, *, user: str | None = None, home: str | None = None) -> object: ...
def scrubbed(value: object, *, user: str | None = None, home: str | None = None) -> object:
    """`value` with absolute paths cut to their last part and the user's name replaced."""
    user = user if user is not None else getpass.getuser()
    home = home if home is not None else str(Path.home())
    if isinstance(value, dict):
        return {k: scrubbed(v, user=user, home=home) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(v, user=user, home=home) for v in value]
    if not isinstance(value, str):
        return value
    text = value.replace(home, "~") if len(home) > 1 else value
    text = _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1], text)
    if len(user) >= 2:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(user)}(?![A-Za-z0-9])", "<user>", text)
    return text


def save(home: Path, record: dict) -> Path:
    """Write a record (validated first) as baselines/<id>.json, mode 0600."""
    problem = schema_problem(record)
    if problem:
        raise StateFileError(f"refusing to save a baseline that {problem}")
    path = ensure_dir(baselines_dir(home)) / f"{record['id']}.json"
    atomic_write(path, (json.dumps(record, indent=1) + "\n").encode())
    return path


@dataclass(frozen=True)
class Stored:
    path: Path
    record: dict


def stored(home: Path, *, check: bool = True) -> list[Stored]:
    """Every record in the local database, oldest first; a bad file is an error naming it.

    `check`: each record is validated against the schema (about 7 ms a record, 130 ms to load the
    validator); the routing path reads without it and guards its own few fields.
    """
    directory = baselines_dir(home)
    out = []
    for path in sorted(directory.glob("b-*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StateFileError(f"{path}: not readable JSON ({exc}); move it away or fix it") from None
        if not isinstance(record, dict) or record.get("kind") != KIND:
            raise StateFileError(f"{path}: not a broke baseline; move it away")
        problem = schema_problem(record) if check else None
        if problem:
            raise StateFileError(f"{path}: {problem}; move it away or fix it")
        out.append(Stored(path, record))
    return sorted(out, key=lambda s: (s.record.get("created_at", ""), s.record.get("id", "")))


def measured(model: dict) -> bool:
    """A model's result holds figures (at least one prompt was measured)."""
    return bool(model["prompts"])


def find(home: Path, record_id: str | None = None, *, machine_id: str | None = None) -> dict:
    """The record `record_id` (a unique prefix will do), else the newest one (of `machine_id`)
    in which something was measured: a record of failures is never the default."""
    records = [s.record for s in stored(home)]
    if record_id is None:
        mine = [r for r in records if (machine_id is None or r["machine"]["id"] == machine_id)
                and any(measured(m) for m in r["models"])]
        if not mine:
            raise NotFoundError("no baselines with measurements on this machine yet; "
                                "run `broke benchmark-sequential`")
        return mine[-1]
    matches = [r for r in records if r["id"] == record_id] or [r for r in records if r["id"].startswith(record_id)]
    if len(matches) != 1:
        what = "no baseline" if not matches else f"{len(matches)} baselines"
        raise NotFoundError(f"{what} with id '{record_id}'; see `broke baseline list`")
    return matches[0]


def remove(home: Path, record_id: str) -> str:
    """Delete one record (by id or a unique prefix) from the local database; returns its id."""
    record = find(home, record_id)
    (baselines_dir(home) / f"{record['id']}.json").unlink()
    return record["id"]


def export(record: dict, target: Path) -> Path:
    """Write a shareable copy of `record`: no absolute paths, no user name."""
    clean = scrubbed(record)
    problem = schema_problem(clean)
    if problem:
        raise StateFileError(f"baseline {record.get('id')} {problem}")
    if target.is_dir():
        target = target / f"{record['id']}.json"
    if not target.parent.is_dir():
        raise InvalidInputError(f"-o {target}: folder {target.parent} does not exist")
    atomic_write(target, (json.dumps(clean, indent=1) + "\n").encode())
    return target


def import_files(home: Path, files: Iterable[Path]) -> tuple[list[str], list[str]]:
    """Import records from files; all are checked first and any bad file imports nothing.

    Returns (ids imported, ids already present).
    """
    incoming: list[dict] = []
    for path in files:
        try:
            record = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"{path}: no such file; nothing was imported") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidInputError(f"{path}: not JSON ({type(exc).__name__}); nothing was imported") from None
        problem = schema_problem(record)
        if problem:
            raise InvalidInputError(f"{path}: {problem}; nothing was imported")
        incoming.append(scrubbed(record))
    have = {s.record["id"] for s in stored(home)}
    added, present = [], []
    for record in incoming:
        if record["id"] in have:
            present.append(record["id"])
            continue
        save(home, record)
        have.add(record["id"])
        added.append(record["id"])
    return added, present


def metric_value(model: dict, metric: str) -> float | None:
    """A model's figure for a compare metric (per-model summary, or the model's own field)."""
    field, _, _ = METRICS[metric]
    value = model["summary"].get(field) if field in model["summary"] else model.get(field)
    if value is None:
        return None
    return value / 2**30 if metric == "memory" else float(value)


def compare(home: Path, metric: str = "decode") -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(models, machines, figure per (model, machine)): the newest figure of each pair.

    Machines are told apart by their label: the `--label` given when benchmarking, else chip and memory
    (so two identical unlabelled machines share a column).
    """
    if metric not in METRICS:
        raise InvalidInputError(f"--metric must be one of {', '.join(METRICS)}")
    from broke.machine import machine_label

    cells: dict[tuple[str, str], float] = {}
    models: list[str] = []
    machines: list[str] = []
    for entry in stored(home):  # oldest first: newer records overwrite older figures
        label = machine_label(entry.record["machine"])
        for model in entry.record["models"]:
            value = metric_value(model, metric)
            if value is None:
                continue
            name = model["backend"]
            models += [name] if name not in models else []
            machines += [label] if label not in machines else []
            cells[(name, label)] = value
    return models, machines, cells


@dataclass(frozen=True)
class Speed:
    """What a backend measured on this machine: the routing-relevant figures of its newest record."""

    decode_tps: float | None
    ttft_s: float | None
    record_id: str


def expected_speeds(home: Path, machine_id: str | None = None) -> dict[str, Speed]:
    """backend id -> its newest measured speed on this machine (records of other machines ignored)."""
    if not baselines_dir(home).is_dir():
        return {}
    if machine_id is None:
        from broke.machine import hardware

        machine_id = hardware()["id"]
    speeds: dict[str, Speed] = {}
    for entry in stored(home, check=False):  # routing reads these on every explain: no schema check
        try:
            if entry.record["machine"]["id"] != machine_id:
                continue
            for model in entry.record["models"]:
                summary = model["summary"]
                if summary.get("decode_tps") or summary.get("ttft_s"):
                    speeds[model["backend"]] = Speed(summary.get("decode_tps"), summary.get("ttft_s"),
                                                     entry.record["id"])
        except (KeyError, TypeError, AttributeError):
            raise StateFileError(f"{entry.path}: not a valid baseline record; "
                                 "`broke baseline list` says what is wrong with it") from None
    return speeds

