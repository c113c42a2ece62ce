"""The state store: one lock around each read-modify-write, atomic replace, generation bump."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from broke.catalog import load_catalog
from broke.errors import FrozenError, LockTimeoutError, StateFileError
from broke.fileio import atomic_write, locate_line, read_toml
from broke.paths import FILE_MODE, broke_home, ensure_dir
from broke.state import migrations
from broke.state.model import SCHEMA_VERSION, SlotConfig, State
from broke.state.schema import SchemaError, structure, unstructure

T = TypeVar("T")
LOCK_TIMEOUT_S = 30.0


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_state() -> State:
    """The state of a fresh home: every slot on the catalog's default backend."""
    catalog = load_catalog()
    return State(slots={slot: SlotConfig(backend=catalog.default_slots[slot]) for slot in catalog.slots})


@dataclass
class LoadedState:
    state: State
    #: The schema version the file was written with (older ones were migrated in memory).
    file_version: int
    exists: bool


def parse_state(data: dict[str, Any], text: str, source: Path) -> LoadedState:
    """Validate and migrate parsed TOML into a State; errors name `source` and the line."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        line = locate_line(text, ("schema_version",))
        raise StateFileError(f"{source}:{line}: schema_version must be an integer")
    if version > SCHEMA_VERSION:
        raise StateFileError(
            f"{source}: written by a newer broke (schema_version {version}; this broke reads up to "
            f"{SCHEMA_VERSION}); upgrade broke or restore a snapshot"
        )
    if version < SCHEMA_VERSION:
        try:
            data = migrations.migrate(data, version, SCHEMA_VERSION)
        except KeyError:
            raise StateFileError(
                f"{source}: schema_version {version} is too old to migrate (no step from it)"
            ) from None
    try:
        state = structure(State, data)
    except SchemaError as exc:
        line = locate_line(text, exc.path)
        raise StateFileError(f"{source}:{line}: {exc.message}") from None
    for slot, config in default_state().slots.items():
        state.slots.setdefault(slot, config)
    return LoadedState(state=state, file_version=version, exists=True)


def dump_state(state: State) -> bytes:
    import tomli_w

    return tomli_w.dumps(unstructure(state)).encode("utf-8")


class StateStore:
    """Reads and writes `$BROKE_HOME/state.toml`."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or broke_home()
        self.path = self.home / "state.toml"
        self.lock_path = self.home / "state.toml.lock"

    def read(self) -> LoadedState:
        """The current state; a fresh home gives the default state without writing anything."""
        if not self.path.exists():
            return LoadedState(state=default_state(), file_version=SCHEMA_VERSION, exists=False)
        data, text = read_toml(self.path)
        return parse_state(data, text, self.path)

    def load(self) -> State:
        return self.read().state

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's lock (one writer at a time)."""
        from filelock import FileLock, Timeout

        ensure_dir(self.home)
        lock = FileLock(self.lock_path, mode=FILE_MODE, timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout:
            raise LockTimeoutError(
                f"{self.lock_path}: another broke process has held the state lock for "
                f"{LOCK_TIMEOUT_S:.0f}s; retry when it finishes"
            ) from None

    def update(self, change: Callable[[State], T], *, allow_frozen: bool = False) -> tuple[State, T]:
        """Read, apply `change` (which mutates the state), bump the generation and write — all under the lock.

        If `change` raises, nothing is written.
        """
        with self.locked():
            loaded = self.read()
            state = loaded.state
            if state.frozen and not allow_frozen:
                raise FrozenError(
                    "state is frozen: no changes allowed; run `broke freeze off` to allow them"
                )
            if loaded.exists and loaded.file_version < SCHEMA_VERSION:
                from broke.state.snapshots import SnapshotStore

                SnapshotStore(self).save_locked(
                    note=f"before migration from schema {loaded.file_version}",
                    data=read_toml(self.path)[0],
                )
            result = change(state)
            state.schema_version = SCHEMA_VERSION
            state.generation += 1
            state.updated_at = utc_now_iso()
            atomic_write(self.path, dump_state(state))
            return state, result
