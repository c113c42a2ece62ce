"""The state store: one lock around each read-modify-write, atomic replace, generation bump; and its snapshots."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from broke.catalog import load_catalog
from broke.errors import FrozenError, LockTimeoutError, NotFoundError, StateFileError
from broke.fileio import atomic_write, framed, is_cut, locate_line, read_toml
from broke.paths import FILE_MODE, broke_home, ensure_dir
from broke.state import migrations
from broke.state.model import SCHEMA_VERSION, SlotConfig, State
from broke.state.schema import SchemaError, structure, unstructure
from broke.state.snapshots import SnapshotFiles, SnapshotInfo

T = TypeVar("T")
LOCK_TIMEOUT_S = 30.0
#: Fields a snapshot restore leaves as they are: bookkeeping, and the freeze switch.
_KEPT_ON_RESTORE = {"schema_version", "generation", "updated_at", "frozen"}


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
            f"{SCHEMA_VERSION}); upgrade broke"
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


#: The first line of every state file broke writes, and its last: a file that starts with the first but
#: lacks the last was cut short (a write that did not finish, or something else truncated it).
FIRST_LINE = "# broke state file: edit it by hand if you like, but keep its last line (or it counts as cut short)"
LAST_LINE = "# end of broke state file"


def dump_state(state: State) -> bytes:
    import tomli_w

    return framed(tomli_w.dumps(unstructure(state)), FIRST_LINE, LAST_LINE)


def check_complete(text: str, data: dict[str, Any], source: Path) -> None:
    """Refuse a state file that holds nothing, or that broke wrote and that lost its end.

    A file without broke's first line (written by hand, or by a broke before these lines) is taken as it is.
    """
    if is_cut(text, FIRST_LINE, LAST_LINE):
        raise StateFileError(
            f"{source}: the state file is cut short (broke's last line '{LAST_LINE}' is missing); "
            "if you edited it by hand and it is complete, add that line back"
        )
    if not data:
        raise StateFileError(f"{source}: the state file is empty (holds no settings)")


class StateStore:
    """Reads and writes `$BROKE_HOME/state.toml`."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or broke_home()
        self.path = self.home / "state.toml"
        self.lock_path = self.home / "state.toml.lock"

    def read(self) -> LoadedState:
        """The current state; a fresh home gives the default state without writing anything. A state file
        that is a symlink to nothing is an error, not a fresh home (a write would replace the link)."""
        if self.path.is_symlink() and not self.path.exists():
            raise StateFileError(f"{self.path} is a symlink to {os.readlink(self.path)}, which does not exist; "
                                 f"restore that file, or {self.recovery_hint()}")
        if not self.path.exists():
            return LoadedState(state=default_state(), file_version=SCHEMA_VERSION, exists=False)
        try:
            data, text = read_toml(self.path)
            check_complete(text, data, self.path)
            return parse_state(data, text, self.path)
        except StateFileError as exc:
            raise StateFileError(f"{exc}; {self.recovery_hint()}") from None

    def recovery_hint(self) -> str:
        """What to do about a damaged state file: the commands that recover it."""
        ids = SnapshotFiles(self.home).ids()
        if not ids:
            return "no snapshot to restore: fix the file, or move it away to start from the defaults"
        return (f"to recover, `broke snapshot list` then `broke snapshot restore ID` (newest: {ids[-1]}), "
                "which keeps the damaged file aside")

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

    def update(self, change: Callable[[State], T], *, allow_frozen: bool = False,
               _locked: bool = False) -> tuple[State, T]:
        """Read, apply `change` (which mutates the state), bump the generation and write — all under the lock
        (`_locked`: the caller already holds it).

        If `change` raises, nothing is written.
        """
        with nullcontext() if _locked else self.locked():
            loaded = self.read()
            state = loaded.state
            if state.frozen and not allow_frozen:
                raise FrozenError(
                    "state is frozen: no changes allowed; run `broke freeze off` to allow them"
                )
            if loaded.exists and loaded.file_version < SCHEMA_VERSION:
                SnapshotFiles(self.home).write(
                    note=f"before migration from schema {loaded.file_version}",
                    data=read_toml(self.path)[0],
                    created_at=utc_now_iso(),
                )
            result = change(state)
            state.schema_version = SCHEMA_VERSION
            state.generation += 1
            state.updated_at = utc_now_iso()
            atomic_write(self.path, dump_state(state))
            return state, result


class SnapshotStore:
    """Snapshots of a store's state: `snapshot save|list|restore`, each under the state lock."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.files = SnapshotFiles(store.home)

    def save(self, note: str = "") -> SnapshotInfo:
        """Snapshot the current state (a fresh home's default state if none was written yet)."""
        with self.store.locked():
            return self.files.write(note, unstructure(self.store.load()), utc_now_iso())

    def _read(self, snapshot_id: int) -> tuple[SnapshotInfo, State]:
        """A snapshot's header and its state, checked as a state file is."""
        info, data, text = self.files.read(snapshot_id)
        return info, parse_state(data, text, self.files.path(snapshot_id)).state

    def list(self) -> tuple[list[SnapshotInfo], list[str]]:
        """Every readable snapshot's header, oldest first, and what is wrong with each unreadable one (a
        damaged snapshot must not hide the others when they are needed most)."""
        infos, problems = [], []
        for i in self.files.ids():
            try:
                infos.append(self._read(i)[0])
            except StateFileError as exc:
                problems.append(str(exc))
        return infos, problems

    def restore(self, snapshot_id: str) -> tuple[State, SnapshotInfo, Path | None]:
        """Make snapshot `snapshot_id` the current state (as a new generation), saving the current one first.

        A current state file that cannot be read (corrupt, cut short, of a newer schema) is not needed: it is
        renamed aside (never deleted) and returned as the third value; otherwise that value is None.
        """
        if not snapshot_id.isdigit() or int(snapshot_id) not in self.files.ids():
            raise NotFoundError(f"no snapshot '{snapshot_id}'; see `broke snapshot list`")
        info, restored = self._read(int(snapshot_id))
        with self.store.locked():
            try:
                self.store.read()
            except StateFileError:
                return self._replace_damaged(restored, info)

            def apply(state: State) -> None:
                self.files.write(f"before restore of snapshot {info.id}", unstructure(state), utc_now_iso())
                for f in fields(State):
                    if f.name not in _KEPT_ON_RESTORE:
                        setattr(state, f.name, getattr(restored, f.name))

            state, _ = self.store.update(apply, _locked=True)
            return state, info, None

    def _replace_damaged(self, restored: State, info: SnapshotInfo) -> tuple[State, SnapshotInfo, Path]:
        """Rename the damaged state file aside and write snapshot `info`'s state in its place; the caller
        holds the lock. The generation goes past every one a snapshot recorded (the damaged file's is unknown)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.store.path.with_name(f"{self.store.path.name}.damaged-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.store.path.with_name(f"{self.store.path.name}.damaged-{stamp}-{n}")
        os.replace(self.store.path, aside)
        known = [info.generation, restored.generation]
        for i in self.files.ids():
            try:
                known.append(int(self.files.read(i)[0].generation))
            except (StateFileError, ValueError, TypeError):
                continue
        restored.schema_version = SCHEMA_VERSION
        restored.generation = max(known) + 1
        restored.updated_at = utc_now_iso()
        atomic_write(self.store.path, dump_state(restored))
        return restored, info, aside
