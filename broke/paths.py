"""Where broke keeps its files, and how they are created (home 0700, files 0600)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

HOME_MODE = 0o700
FILE_MODE = 0o600

#: The checkout (or install) root: shipped presets live in its teams/ and profiles/.
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
    """Create `path` (and parents) if it is missing, the directory itself with mode 0700; return it."""
    if not path.is_dir():
        path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        os.chmod(path, HOME_MODE)
    return path
