"""Runtime health records (`health.json`, written by the gateway): keys, models and workers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from broke.errors import StateFileError

STATUSES = ("healthy", "cooldown", "blocked", "auth_failed", "incompatible")
#: Statuses that take a candidate out of the running.
UNUSABLE = ("cooldown", "blocked", "auth_failed", "incompatible")


@dataclass(frozen=True)
class HealthRecord:
    status: str
    until: float | None = None  # epoch seconds a cooldown lasts
    reason: str = ""

    def effective(self, now: float) -> str:
        """The status at `now`: a cooldown whose time has passed counts as healthy."""
        if self.status == "cooldown" and self.until is not None and self.until <= now:
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

    def model_status(self, backend_id: str, now: float) -> str:
        record = self.models.get(backend_id)
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
        records[name] = HealthRecord(entry["status"], until, str(entry.get("reason", "")))
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
