"""Runtime health records (`health.json`, written by the gateway): keys, models and workers."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from broke.errors import StateFileError

STATUSES = ("healthy", "cooldown", "blocked", "auth_failed", "incompatible")
#: Statuses that take a candidate out of the running.
UNUSABLE = ("cooldown", "blocked", "auth_failed", "incompatible")
#: Statuses a request never goes to, whatever the policy (a cooldown may be tried last).
NEVER_TRIED = ("blocked", "auth_failed", "incompatible")


SECTIONS = ("keys", "models", "workers")


@dataclass(frozen=True)
class HealthRecord:
    status: str
    until: float | None = None  # epoch seconds the status lasts (None: until changed)
    reason: str = ""
    failures: int = 0  # consecutive failures seen
    updated_at: float = 0.0

    def effective(self, now: float) -> str:
        """The status at `now`: a status whose `until` has passed counts as healthy."""
        if self.until is not None and self.until <= now:
            return "healthy"
        return self.status


@dataclass(frozen=True)
class Health:
    generation: int = 0
    keys: dict[str, HealthRecord] = field(default_factory=dict)
    models: dict[str, HealthRecord] = field(default_factory=dict)
    workers: dict[str, HealthRecord] = field(default_factory=dict)

    def key_status(self, key_env: str, now: float) -> str:
        record = self.keys.get(key_env)
        return record.effective(now) if record else "unknown"

    def pool_record(self, model: str, now: float) -> HealthRecord | None:
        """The best record of a local model's workers (`NAME` or `NAME@PORT`): a healthy one if any."""
        records = [r for key, r in self.workers.items() if key == model or key.startswith(f"{model}@")]
        if not records:
            return None
        healthy = [r for r in records if r.effective(now) == "healthy"]
        return max(healthy or records, key=lambda r: r.updated_at)

    def backend_record(self, backend_id: str, worker: str | None = None,
                       now: float | None = None) -> HealthRecord | None:
        """A backend's record; for a local model the newer of its own and its workers' counts."""
        record = self.models.get(backend_id)
        worker_record = self.pool_record(worker, time.time() if now is None else now) if worker else None
        if worker_record and (record is None or worker_record.updated_at >= record.updated_at):
            return worker_record
        return record

    def model_status(self, backend_id: str, now: float, worker: str | None = None) -> str:
        record = self.backend_record(backend_id, worker, now)
        return record.effective(now) if record else "unknown"


def _records(path: Path, data: object, section: str) -> dict[str, HealthRecord]:
    raw = data.get(section, {}) if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise StateFileError(f"{path}: '{section}' must be an object")
    records = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
            raise StateFileError(
                f"{path}: {section}.{name} needs a status, one of {', '.join(STATUSES)}"
            )
        until = entry.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))):
            raise StateFileError(f"{path}: {section}.{name}.until must be a number")
        failures = entry.get("failures", 0)
        updated_at = entry.get("updated_at", 0.0)
        if isinstance(failures, bool) or not isinstance(failures, int):
            raise StateFileError(f"{path}: {section}.{name}.failures must be an integer")
        if isinstance(updated_at, bool) or not isinstance(updated_at, (int, float)):
            raise StateFileError(f"{path}: {section}.{name}.updated_at must be a number")
        records[name] = HealthRecord(entry["status"], until, str(entry.get("reason", "")), failures,
                                     float(updated_at))
    return records


def load_health(path: Path) -> Health:
    """Read `health.json`; absent means nothing is known yet (every status 'unknown')."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Health()
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise StateFileError(f"{path}: must hold a JSON object")
    generation = data.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise StateFileError(f"{path}: generation must be an integer")
    return Health(
        generation=generation,
        keys=_records(path, data, "keys"),
        models=_records(path, data, "models"),
        workers=_records(path, data, "workers"),
    )


def dump_health(health: Health) -> bytes:
    import json

    data = {"generation": health.generation}
    for section in SECTIONS:
        data[section] = {name: asdict(record) for name, record in getattr(health, section).items()}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")


class HealthStore:
    """Reads and writes `health.json` under its own lock (the gateway and `key-state`/`model-state`)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "health.json"
        self.lock_path = home / "health.json.lock"

    def load(self) -> Health:
        return load_health(self.path)

    def forget(self, section: str, name: str) -> None:
        """Drop one record (a worker that stopped for good: its NAME@PORT will not come back)."""
        self._change(section, lambda records: records.pop(name, None))

    def set(self, section: str, name: str, status: str, *, until: float | None = None,
            reason: str = "", count_failure: bool = False) -> Health:
        """Record `status` for one key, model or worker; a new generation of the file."""
        if section not in SECTIONS or status not in STATUSES:
            raise ValueError(f"bad health record {section}/{status}")

        def record(records: dict[str, HealthRecord]) -> None:
            previous = records.get(name)
            failures = (previous.failures if previous else 0) + 1 if count_failure else 0
            records[name] = HealthRecord(status, until, reason, failures, time.time())

        return self._change(section, record)

    def _change(self, section: str, change: Callable[[dict[str, HealthRecord]], object]) -> Health:
        """Apply `change` to one section's records under the lock; a new generation of the file."""
        from filelock import FileLock

        from broke.fileio import atomic_write
        from broke.paths import FILE_MODE, ensure_dir

        ensure_dir(self.home)
        with FileLock(self.lock_path, mode=FILE_MODE, timeout=10):
            current = self.load()
            records = dict(getattr(current, section))
            change(records)
            updated = replace(current, generation=current.generation + 1, **{section: records})
            atomic_write(self.path, dump_health(updated))
        return updated
