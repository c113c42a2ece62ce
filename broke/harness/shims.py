"""The shim directory of a run: one small executable per tool that matters, leading PATH."""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from broke.paths import FILE_MODE

#: The tools whose every call the ledger records.
TOOLS = ("git", "python", "python3", "pytest", "npm", "node", "make", "curl", "wget", "nc")
SHIM_SOURCE = Path(__file__).with_name("shim.py")
EXECUTABLE_MODE = 0o700


def shim_python() -> Path:
    """The interpreter the shims run with: the base one, which needs nothing of broke's environment."""
    return Path(sys.executable).resolve()


def install_shims(bin_dir: Path, environ: Mapping[str, str]) -> list[str]:
    """Write a shim into `bin_dir` for each tool found on the caller's PATH; the names shimmed."""
    path = environ.get("PATH", os.defpath)
    body = SHIM_SOURCE.read_text(encoding="utf-8")
    script = f"#!{shim_python()} -IS\n{body}"  # one shebang argument: isolated, no site
    shimmed = []
    for tool in TOOLS:
        if shutil.which(tool, path=path) is None:
            continue
        target = bin_dir / tool
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(script)
        os.chmod(target, EXECUTABLE_MODE)
        shimmed.append(tool)
    return shimmed


def shimmed_path(bin_dir: Path, environ: Mapping[str, str]) -> str:
    """PATH with the shim directory first."""
    return os.pathsep.join([str(bin_dir), environ.get("PATH", os.defpath)])
