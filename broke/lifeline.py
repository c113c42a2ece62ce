"""Run a Python module as a child that ends when its parent does: `python -m broke.lifeline MODULE ARGS…`.

The parent starts it with a pipe as standard input and keeps the write end. When the parent exits for
any reason (SIGKILL included) the kernel closes that end, the read here sees end-of-file, and this
process exits at once. That works alike on Linux and macOS (which has no PR_SET_PDEATHSIG), so a
model server never outlives the supervisor that watches it.
"""
from __future__ import annotations

import os
import runpy
import sys
import threading

#: Exit status when the parent is gone (128 + SIGHUP, as for a lost terminal).
ORPHANED_EXIT = 129


def _watch(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os._exit(ORPHANED_EXIT)  # no clean-up: nobody is left to answer to


def watch_parent(fd: int = 0) -> None:
    """Exit this process as soon as `fd` (the parent's pipe) reaches end-of-file."""
    threading.Thread(target=_watch, args=(fd,), name="broke-lifeline", daemon=True).start()


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m broke.lifeline MODULE [ARGS…]")
    watch_parent(os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the module itself reads nothing from the parent's pipe
    os.close(null)
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
