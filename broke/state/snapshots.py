"""Snapshot files: `$BROKE_HOME/snapshots/NNNNNN.toml`, each a [snapshot] header and a [state] table.

Files only: naming, writing (keeping the newest MAX_SNAPSHOTS) and reading them back as raw data.
Taking a snapshot under the state lock, listing and restoring them is `store.SnapshotStore`'s.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from broke.errors import StateFileError
from broke.fileio import atomic_write, framed, is_cut, read_toml
from broke.state.schema import unstructure

MAX_SNAPSHOTS = 20
#: A snapshot file's first and last lines: one that starts with the first and lacks the last was cut short.
FIRST_LINE = "# broke snapshot: a copy of the state (`broke snapshot restore ID` makes it current again)"
LAST_LINE = "# end of broke snapshot"


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot's header: its number, when it was taken, the state's generation and team, and why."""

    id: int
    created_at: str
    generation: int
    team: str
    note: str


class SnapshotFiles:
    """The snapshot files of one home."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "snapshots"

    def path(self, snapshot_id: int) -> Path:
        """The file of snapshot `snapshot_id`."""
        return self.dir / f"{snapshot_id:06d}.toml"

    def ids(self) -> list[int]:
        """The numbers of the snapshots on disk, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(int(p.stem) for p in self.dir.glob("*.toml") if p.stem.isdigit())

    def write(self, note: str, data: dict[str, Any], created_at: str) -> SnapshotInfo:
        """Write a snapshot of `data` (raw state data) as the next number, then drop all but the newest
        MAX_SNAPSHOTS; the caller holds the state lock."""
        import tomli_w

        ids = self.ids()
        info = SnapshotInfo(
            id=(ids[-1] + 1) if ids else 1,
            created_at=created_at,
            generation=int(data.get("generation", 0)),
            team=str(data.get("active_team", "")),
            note=note,
        )
        document = {"snapshot": unstructure(info), "state": data}
        atomic_write(self.path(info.id), framed(tomli_w.dumps(document), FIRST_LINE, LAST_LINE))
        for old in (ids + [info.id])[:-MAX_SNAPSHOTS]:
            self.path(old).unlink(missing_ok=True)
        return info

    def read(self, snapshot_id: int) -> tuple[SnapshotInfo, dict[str, Any], str]:
        """Snapshot `snapshot_id`'s header, its raw state data and the file's text (for error lines)."""
        path = self.path(snapshot_id)
        data, text = read_toml(path)
        if is_cut(text, FIRST_LINE, LAST_LINE):
            raise StateFileError(f"{path}: the snapshot is cut short (its last line '{LAST_LINE}' is missing)")
        meta, state_data = data.get("snapshot"), data.get("state")
        if not isinstance(meta, dict) or not isinstance(state_data, dict):
            raise StateFileError(f"{path}: not a broke snapshot (needs [snapshot] and [state])")
        info = SnapshotInfo(**{f.name: meta.get(f.name, "") for f in fields(SnapshotInfo)})
        return info, state_data, text
