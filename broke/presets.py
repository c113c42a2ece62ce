"""Teams (saved slot mappings) and profiles (team + access), from the user's home or shipped presets."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import tomli_w

from broke.errors import InvalidInputError, NotFoundError, StateFileError
from broke.fileio import atomic_write, framed, is_cut, locate_line, read_toml
from broke.paths import PROJECT_ROOT
from broke.state.model import ON_BUDGET, Access, Budget, SlotConfig
from broke.state.schema import SchemaError, structure, unstructure

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Where the shipped presets' teams/ and profiles/ are: the package's shipped/ in a wheel (pyproject.toml
#: puts them there), else the checkout root.
_IN_PACKAGE = Path(__file__).resolve().parent / "shipped"
SHIPPED_ROOT = _IN_PACKAGE if _IN_PACKAGE.is_dir() else PROJECT_ROOT


@dataclass
class Team:
    """A saved slot mapping with fallbacks; slots it leaves out keep their mapping on load."""

    description: str = ""
    slots: dict[str, SlotConfig] = field(default_factory=dict)
    #: Access limits loading the team sets (None: loading it leaves them as they are).
    access: Access | None = None


@dataclass
class Profile:
    """A team plus access limits; `team` "" keeps the current mapping."""

    description: str = ""
    team: str = ""
    access: Access = field(default_factory=Access)
    budget: Budget = field(default_factory=Budget)
    #: Past its budget: "refuse" (429), or "fallback": only candidates that cost nothing (local workers)
    on_budget: str = field(default="refuse", metadata={"choices": ON_BUDGET})


P = TypeVar("P", Team, Profile)


@dataclass(frozen=True)
class PresetEntry(Generic[P]):
    name: str
    origin: str  # "user" or "shipped"
    path: Path
    preset: P


class PresetLibrary(Generic[P]):
    """User presets under `$BROKE_HOME/<kind>/`, shipped ones under SHIPPED_ROOT's `<kind>/`."""

    def __init__(self, kind: str, cls: type[P], home: Path) -> None:
        self.kind = kind
        self.cls: type[P] = cls
        self.user_dir = home / kind
        self.shipped_dir = SHIPPED_ROOT / kind
        self.noun = kind.rstrip("s")

    def check_name(self, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise InvalidInputError(
                f"{self.noun} name '{name}' must be 1-64 letters, digits, '.', '_' or '-'"
            )
        return name

    def _first_line(self) -> str:
        return f"# broke {self.noun}: edit it by hand if you like, but keep its last line (or it counts as cut short)"

    def _last_line(self) -> str:
        return f"# end of broke {self.noun}"

    def _parse(self, path: Path) -> P:
        data, text = read_toml(path)
        if is_cut(text, self._first_line(), self._last_line()):
            raise StateFileError(f"{path}: the {self.noun} file is cut short (broke's last line '{self._last_line()}' "
                                 "is missing); if you edited it by hand and it is complete, add that line back")
        if not data and not text.startswith(self._first_line()[:18]):  # broke may write an empty preset, framed
            raise StateFileError(f"{path}: the {self.noun} file is empty (holds no settings)")
        try:
            return structure(self.cls, data)
        except SchemaError as exc:
            raise StateFileError(f"{path}:{locate_line(text, exc.path)}: {exc.message}") from None

    def _origin_paths(self, name: str) -> list[tuple[str, Path]]:
        return [("user", self.user_dir / f"{name}.toml"), ("shipped", self.shipped_dir / f"{name}.toml")]

    def get(self, name: str) -> PresetEntry[P]:
        """A user preset, else a shipped one of that name."""
        self.check_name(name)
        for origin, path in self._origin_paths(name):
            if path.is_file():
                return PresetEntry(name, origin, path, self._parse(path))
        raise NotFoundError(f"unknown {self.noun} '{name}'; see `broke {self.noun} list`")

    def list(self) -> list[PresetEntry[P]]:
        """Every preset by name; a user preset hides a shipped one of the same name."""
        entries: dict[str, PresetEntry[P]] = {}
        for origin, directory in (("shipped", self.shipped_dir), ("user", self.user_dir)):
            if directory.is_dir():
                for path in directory.glob("*.toml"):
                    entries[path.stem] = PresetEntry(path.stem, origin, path, self._parse(path))
        return [entries[name] for name in sorted(entries)]

    def exists(self, name: str) -> bool:
        return any(path.is_file() for _, path in self._origin_paths(self.check_name(name)))

    def save(self, name: str, preset: P) -> Path:
        path = self.user_dir / f"{self.check_name(name)}.toml"
        atomic_write(path, framed(tomli_w.dumps(unstructure(preset)), self._first_line(), self._last_line()))
        return path

    def delete(self, name: str) -> Path:
        path = self.user_dir / f"{self.check_name(name)}.toml"
        if not path.is_file():
            if (self.shipped_dir / f"{name}.toml").is_file():
                raise InvalidInputError(f"{self.noun} '{name}' is a shipped preset and cannot be deleted")
            raise NotFoundError(f"unknown {self.noun} '{name}'; see `broke {self.noun} list`")
        path.unlink()
        return path


def teams(home: Path) -> PresetLibrary[Team]:
    return PresetLibrary("teams", Team, home)


def profiles(home: Path) -> PresetLibrary[Profile]:
    return PresetLibrary("profiles", Profile, home)
