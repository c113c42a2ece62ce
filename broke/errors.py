"""Errors meant for a person: the CLI prints the message on one line and exits with `exit_code`."""
from __future__ import annotations

from collections.abc import Collection


class BrokeError(Exception):
    """Base of every error broke reports to the user (exit code 1)."""

    exit_code = 1


class StateFileError(BrokeError):
    """A state, team, profile or snapshot file that cannot be read, parsed or validated."""


class NotFoundError(BrokeError):
    """An unknown slot, backend, team, profile, snapshot or provider."""


class FrozenError(BrokeError):
    """A state-changing command while the state is frozen."""


class InvalidInputError(BrokeError):
    """A well-formed command whose values make no sense (a cycle, a bad URL, a name taken)."""


class UsageProblem(BrokeError):
    """A command line of the wrong shape that the parser could not tell (exit code 2)."""

    exit_code = 2


class LockTimeoutError(BrokeError):
    """Another broke process held the state lock for too long."""


def one_of(kind: str, name: str, choices: Collection[str]) -> str:
    """`name` if it is one of `choices`; else UsageProblem "unknown KIND 'NAME'; expected one of: …"."""
    if name not in choices:
        raise UsageProblem(f"unknown {kind} '{name}'; expected one of: {', '.join(choices)}")
    return name
