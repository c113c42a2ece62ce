"""Snapshots of the state: `snapshot save|list|restore`, keeping the newest MAX_SNAPSHOTS."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomli_w

from broke.errors import NotFoundError, StateFileError
from broke.fileio import atomic_write, read_toml
from broke.state.model import State
from broke.state.schema import unstructure
from broke.state.store import StateStore, parse_state, utc_now_iso

MAX_SNAPSHOTS = 20
#: Fields a restore leaves as they are: bookkeeping, and the freeze switch.
_KEPT_ON_RESTORE = {"schema_version", "generation", "updated_at", "frozen"}


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    created_at: str
    generation: int
    team: str
    note: str


class SnapshotStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.dir = store.home / "snapshots"

    def _path(self, snapshot_id: int) -> Path:
        return self.dir / f"{snapshot_id:06d}.toml"

    def _ids(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(p.stem) for p in self.dir.glob("*.toml") if p.stem.isdigit())

    def save(self, note: str = "") -> SnapshotInfo:
        """Snapshot the current state (a fresh home's default state if none was written yet)."""
        with self.store.locked():
            return self.save_locked(note, unstructure(self.store.load()))

    def save_locked(self, note: str, data: dict[str, Any]) -> SnapshotInfo:
        """Write a snapshot of `data` (raw state data); the caller holds the state lock."""
        ids = self._ids()
        info = SnapshotInfo(
            id=(ids[-1] + 1) if ids else 1,
            created_at=utc_now_iso(),
            generation=int(data.get("generation", 0)),
            team=str(data.get("active_team", "")),
            note=note,
        )
        document = {"snapshot": unstructure(info), "state": data}
        atomic_write(self._path(info.id), tomli_w.dumps(document).encode("utf-8"))
        for old in (ids + [info.id])[:-MAX_SNAPSHOTS]:
            self._path(old).unlink(missing_ok=True)
        return info

    def _read(self, snapshot_id: int) -> tuple[SnapshotInfo, State]:
        path = self._path(snapshot_id)
        data, text = read_toml(path)
        meta, state_data = data.get("snapshot"), data.get("state")
        if not isinstance(meta, dict) or not isinstance(state_data, dict):
            raise StateFileError(f"{path}: not a broke snapshot (needs [snapshot] and [state])")
        info = SnapshotInfo(**{f.name: meta.get(f.name, "") for f in fields(SnapshotInfo)})
        return info, parse_state(state_data, text, path).state

    def list(self) -> list[SnapshotInfo]:
        return [self._read(i)[0] for i in self._ids()]

    def restore(self, snapshot_id: str) -> tuple[State, SnapshotInfo]:
        """Make snapshot `snapshot_id` the current state (as a new generation), saving the current one first."""
        if not snapshot_id.isdigit() or int(snapshot_id) not in self._ids():
            raise NotFoundError(f"no snapshot '{snapshot_id}'; see `broke snapshot list`")
        info, restored = self._read(int(snapshot_id))

        def apply(state: State) -> None:
            self.save_locked(f"before restore of snapshot {info.id}", unstructure(state))
            for f in fields(State):
                if f.name not in _KEPT_ON_RESTORE:
                    setattr(state, f.name, getattr(restored, f.name))

        state, _ = self.store.update(apply)
        return state, info
