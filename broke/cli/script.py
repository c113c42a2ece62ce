"""The `broke` console script: the app, started the way a command that lasts milliseconds should be."""
from __future__ import annotations

import atexit
import gc
import sys


def main() -> None:
    """Import the app with the garbage collector paused, then run it."""
    # httpx imports its own command line (click, rich.syntax, pygments: ~30 ms here) whenever click is
    # installed; broke never runs it. A None entry makes that import fail, as httpx expects without click.
    # (typeshed types sys.modules as dict[str, ModuleType]; a None entry is the import system's documented block.)
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # Importing the app allocates tens of thousands of objects that live until exit: collecting meanwhile
    # finds no garbage (~6 ms here), and frozen they are skipped by every later collection.
    gc.disable()
    try:
        from broke.cli.main import app
    finally:
        gc.freeze()
        gc.enable()
    # At exit CPython collects once more, only to free memory the OS frees anyway (~10 ms here); freezing
    # what the command created leaves it out. This handler runs after those the command registers.
    atexit.register(gc.freeze)
    app()
