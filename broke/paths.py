"""Where broke keeps its files, and how they are created (home 0700, files 0600)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

HOME_MODE = 0o700
FILE_MODE = 0o600

#: The checkout root: shipped presets live in its teams/ and profiles/ (a wheel carries them inside the
#: package: `presets.SHIPPED_ROOT`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def broke_home() -> Path:
    """`$BROKE_HOME`, else the platform's application data directory for broke."""
    explicit = os.environ.get("BROKE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "broke"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "broke"


def ensure_dir(path: Path) -> Path:
    """Create `path` if it is missing, and each missing parent, with mode 0700; return it."""
    if not path.is_dir():
        missing = [path, *(p for p in path.parents if not p.exists())]
        for directory in reversed(missing):
            directory.mkdir(mode=HOME_MODE, exist_ok=True)
            os.chmod(directory, HOME_MODE)
    return path


def make_private(root: Path) -> Path:
    """Give a directory tree broke wrote the home's modes: directories 0700, files 0600."""
    os.chmod(root, HOME_MODE)
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(directory, name), HOME_MODE)
        for name in files:
            os.chmod(os.path.join(directory, name), FILE_MODE)
    return root
