"""Runtime health: the records in `health.json` (keys, models, workers), their one store, the
transitions every writer follows (cooldown lengths, auth windows, manual changes) and the rotation
log that says why each change happened.

The gateway, `key-state` / `model-state` and the worker supervisor all change health through
`HealthTransitions`, so a failure means the same wherever it is seen.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from broke.errors import StateFileError
from broke.eventlog import EventLog as EventLog  # re-exported: the rotation log lived here
from broke.eventlog import rotation_log as rotation_log
from broke.paths import FILE_MODE, ensure_dir
from broke.state.model import DEFAULT_KEY_COOLDOWN_S

STATUSES = ("healthy", "cooldown", "blocked", "auth_failed", "incompatible")
#: Statuses that take a candidate out of the running.
UNUSABLE = ("cooldown", "blocked", "auth_failed", "incompatible")
#: Statuses a request never goes to, whatever the policy (a cooldown may be tried last).
NEVER_TRIED = ("blocked", "auth_failed", "incompatible")


SECTIONS = ("keys", "models", "workers")

log = logging.getLogger(__name__)


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
    except UnicodeDecodeError:
        raise StateFileError(f"{path}: not UTF-8 text") from None
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
    data: dict[str, Any] = {"generation": health.generation}
    for section in SECTIONS:
        data[section] = {name: asdict(record) for name, record in getattr(health, section).items()}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")


CORRUPT_SUFFIX = ".corrupt-"


def keep_aside(path: Path) -> Path:
    """Move a corrupt file to PATH.corrupt-TIMESTAMP (a new name each time) and return that name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}-{number}")
    os.replace(path, aside)
    return aside


def corrupt_copies(path: Path) -> list[Path]:
    """The corrupt files kept aside beside `path`, oldest first."""
    return sorted(path.parent.glob(f"{path.name}{CORRUPT_SUFFIX}*"))


class HealthStore:
    """Reads and writes `health.json` under its own lock (the gateway and `key-state`/`model-state`)."""

    def __init__(self, home: Path, known: Callable[[], Health | None] | None = None) -> None:
        self.home = home
        self.path = home / "health.json"
        self.lock_path = home / "health.json.lock"
        #: What the writer knows when the file is corrupt (the gateway: its last good view)
        self.known = known
        self._last_good: Health | None = None

    def load(self) -> Health:
        health = load_health(self.path)
        self._last_good = health
        return health

    def _current(self) -> Health:
        """The file's health; a corrupt file is moved aside (never lost) and what this writer
        knows stands in for it, so that a write replaces it with a clean file."""
        try:
            return self.load()
        except StateFileError as exc:
            aside = keep_aside(self.path)
            log.error("%s; moved aside to %s, rewritten from what this process knows", exc, aside.name)
            known = self.known() if self.known else None
            return known or self._last_good or Health()

    def forget(self, section: str, name: str) -> None:
        """Drop one record (a worker that stopped for good: its NAME@PORT will not come back)."""
        self.change(section, lambda records: records.pop(name, None))

    def set(self, section: str, name: str, status: str, *, until: float | None = None,
            reason: str = "", count_failure: bool = False) -> Health:
        """Record `status` for one key, model or worker; a new generation of the file."""
        if section not in SECTIONS or status not in STATUSES:
            raise ValueError(f"bad health record {section}/{status}")

        def record(records: dict[str, HealthRecord]) -> None:
            previous = records.get(name)
            failures = (previous.failures if previous else 0) + 1 if count_failure else 0
            records[name] = HealthRecord(status, until, reason, failures, time.time())

        return self.change(section, record)

    def fail(self, section: str, name: str, status: str, *, reason: str,
             seconds: Callable[[int], float]) -> HealthRecord:
        """Count one more failure of a key, model or worker and set `status` for `seconds(failures)`,
        where `failures` counts this one and those before it that were not yet forgiven (a success
        forgives them, and so does a quiet spell as long as the last cooldown, once it has ended)."""
        if section not in SECTIONS or status not in STATUSES:
            raise ValueError(f"bad health record {section}/{status}")
        out: list[HealthRecord] = []

        def record(records: dict[str, HealthRecord]) -> None:
            now = time.time()
            previous = records.get(name)
            failures = 1
            if previous and previous.failures and previous.until is not None \
                    and now - previous.until < previous.until - previous.updated_at:
                failures = previous.failures + 1
            records[name] = HealthRecord(status, now + seconds(failures), reason, failures, now)
            out.append(records[name])

        self.change(section, record)
        return out[0]

    def recover(self, section: str, names: Iterable[str]) -> None:
        """Records that had failures are healthy again (an answer came through): one write for all."""
        def record(records: dict[str, HealthRecord]) -> None:
            for name in names:
                previous = records.get(name)
                if previous is not None and previous.status not in NEVER_TRIED:
                    records[name] = HealthRecord("healthy", None, "answered", 0, time.time())

        self.change(section, record)

    def change(self, section: str, change: Callable[[dict[str, HealthRecord]], object]) -> Health:
        """Apply `change` to one section's records under the lock; a new generation of the file."""
        from filelock import FileLock

        from broke.fileio import atomic_write

        ensure_dir(self.home)
        with FileLock(self.lock_path, mode=FILE_MODE, timeout=10):
            current = self._current()
            records = dict(getattr(current, section))
            change(records)
            updated = replace(current, generation=current.generation + 1, **{section: records})
            atomic_write(self.path, dump_health(updated))
        self._last_good = updated
        return updated


# ---- the rotation log ---------------------------------------------------------------------------
#: Reason codes.
RATE_LIMIT, AUTH, TIMEOUT, ERROR, MANUAL = "429", "auth", "timeout", "error", "manual"
BUSY = "busy"  # a local model's workers were all at their concurrency limit: the next candidate served


# ---- transitions --------------------------------------------------------------------------------
#: The first cooldown after a failure; each failure in a row doubles it, up to a cap: a blip costs
#: a second, an outage is probed less and less often.
FIRST_COOLDOWN_S = 1.0
#: The longest a backend or worker that keeps failing (5xx, timeout, connection) is skipped.
BACKEND_COOLDOWN_S = 30.0
#: An upstream's Retry-After is honoured up to this many seconds.
RETRY_AFTER_CAP_S = 60.0
#: How long a key that failed authentication is skipped before it is tried again.
AUTH_RETRY_S = 300.0
#: How long `key-state` / `model-state ... cooldown` lasts when no duration is given.
MANUAL_COOLDOWN_S = float(DEFAULT_KEY_COOLDOWN_S)


def reason_for_status(status: int) -> str:
    """The reason code of an upstream's retryable HTTP status."""
    if status == 429:
        return RATE_LIMIT
    if status in (401, 403):
        return AUTH
    if status == 408:
        return TIMEOUT
    return ERROR


def backoff(failures: int, cap: float) -> float:
    """The cooldown after `failures` failures in a row: 1 s, 2 s, 4 s, … up to `cap`."""
    return float(min(FIRST_COOLDOWN_S * 2 ** min(failures - 1, 30), cap))


def cooldown_for(failures: int, cap: float, retry_after_s: float | None) -> float:
    """The upstream's Retry-After (capped) when it said one, else the backoff."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), RETRY_AFTER_CAP_S)
    return backoff(failures, cap)


def blames_key(reason: str) -> bool:
    """True when a failure is the key's (rate limit, auth), not the backend's."""
    return reason in (RATE_LIMIT, AUTH)


class HealthTransitions:
    """Every change of health, with its rule: what status, for how long, and the log line."""

    def __init__(self, home: Path, known: Callable[[], Health | None] | None = None) -> None:
        self.store = HealthStore(home, known)
        self.log = rotation_log(home)

    def key_failed(self, key_env: str, reason: str, cooldown_s: float | None,
                   retry_after_s: float | None = None) -> HealthRecord:
        """A key was refused: a rate limit cools it down for the upstream's Retry-After (capped), else
        for a backoff capped by its policy's cooldown; a failed auth benches it for AUTH_RETRY_S."""
        if reason == RATE_LIMIT:
            cap = float(DEFAULT_KEY_COOLDOWN_S if cooldown_s is None else cooldown_s)
            return self.store.fail("keys", key_env, "cooldown", reason=reason,
                                   seconds=lambda failures: cooldown_for(failures, cap, retry_after_s))
        return self.store.fail("keys", key_env, "auth_failed", reason=reason, seconds=lambda _: AUTH_RETRY_S)

    def backend_failed(self, backend: str, reason: str, retry_after_s: float | None = None,
                       cap_s: float | None = None) -> HealthRecord:
        """A backend failed as a whole (5xx, timeout, no connection): it sits out a backoff (or the
        upstream's Retry-After), at most `cap_s` (its slot's model policy) or else BACKEND_COOLDOWN_S."""
        cap = BACKEND_COOLDOWN_S if cap_s is None else float(cap_s)
        return self.store.fail("models", backend, "cooldown", reason=reason,
                               seconds=lambda failures: cooldown_for(failures, cap, retry_after_s))

    def worker_failed(self, worker: str, reason: str) -> HealthRecord:
        """One replica of a local model failed a request: it sits out a backoff, at most BACKEND_COOLDOWN_S."""
        return self.store.fail("workers", worker, "cooldown", reason=reason,
                               seconds=lambda failures: backoff(failures, BACKEND_COOLDOWN_S))

    @staticmethod
    def to_forgive(backend: str, key_env: str | None, worker: str | None, health: Health) -> list[tuple[str, str]]:
        """What an answered attempt forgives: (section, name) of its backend, key and replica where
        `health` (the request's view) shows failures. Empty for almost every request: nothing to write."""
        out = []
        for section, name in (("models", backend), ("keys", key_env), ("workers", worker)):
            record = getattr(health, section).get(name) if name else None
            if name and record and record.failures and record.status not in NEVER_TRIED:
                out.append((section, name))
        return out

    def forgive(self, failed: list[tuple[str, str]]) -> None:
        """Those records are healthy again, their failures forgotten (an answer came through)."""
        for section in {s for s, _ in failed}:
            self.store.recover(section, [name for s, name in failed if s == section])

    def keys_reloaded(self) -> None:
        """The gateway (re)started and read its keys afresh: their failures and auth benches are
        forgotten; a key blocked, or set by hand, stays so."""
        def record(records: dict[str, HealthRecord]) -> None:
            for name in [n for n, r in records.items() if r.status != "blocked" and r.reason != MANUAL]:
                del records[name]

        self.store.change("keys", record)

    def worker_ready(self, worker: str) -> None:
        """A worker's server answers its health check."""
        self.store.set("workers", worker, "healthy", reason="ready")

    def worker_restarting(self, worker: str) -> None:
        """A worker's server exited: it sits out (no end time) until it answers again."""
        self.store.set("workers", worker, "cooldown", reason="restarting", count_failure=True)

    def worker_gone(self, worker: str) -> None:
        """A worker stopped for good: its NAME@PORT will not come back."""
        self.store.forget("workers", worker)

    def set_by_hand(self, section: str, name: str, status: str, seconds: float | None) -> float | None:
        """`key-state` / `model-state ... set`: returns when the status ends (None: until changed)."""
        until = time.time() + seconds if seconds else None
        if status == "cooldown" and until is None:
            until = time.time() + MANUAL_COOLDOWN_S
        self.store.set(section, name, status, until=until, reason=MANUAL)
        return until
