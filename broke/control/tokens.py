"""Fixed tokens from the environment (or `$BROKE_HOME/.env`), and the admin token of `/admin/v1`.

`BROKE_CLIENT_TOKEN` fixes the client token (so one token works on every machine of a team);
`BROKE_INTERNAL_MASTER_KEY` fixes the key between the front proxy and LiteLLM. Values are checked for
length and never appear in an error. The admin token is made on first use, kept 0600 in `run/admin_token`.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from broke.errors import InvalidInputError, StateFileError
from broke.fileio import atomic_write
from broke.paths import ensure_dir

CLIENT_TOKEN_ENV = "BROKE_CLIENT_TOKEN"
MASTER_KEY_ENV = "BROKE_INTERNAL_MASTER_KEY"
#: The shortest fixed token accepted: shorter ones are guessable.
MIN_TOKEN_LENGTH = 32


def fixed_token(home: Path, variable: str) -> str | None:
    """The value of `variable` from the environment or `$BROKE_HOME/.env` (the environment wins); None if
    unset or empty. A value that is too short or holds whitespace is refused, naming the variable only."""
    from broke.keys import provider_env

    value = provider_env(home / ".env").get(variable, "")
    if not value:
        return None
    if len(value) < MIN_TOKEN_LENGTH or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInputError(
            f"{variable} must be at least {MIN_TOKEN_LENGTH} printable characters without spaces "
            f"(it has {len(value)}); make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return value


def admin_token_path(home: Path) -> Path:
    return home / "run" / "admin_token"


def read_admin_token(home: Path) -> str | None:
    """The admin token, or None if none was made yet."""
    path = admin_token_path(home)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not token:
        raise StateFileError(f"{path}: empty admin token file; remove it to make a new one")
    return token


def admin_token(home: Path) -> str:
    """The admin token, made (0600) on first use; never the client token."""
    from filelock import FileLock

    from broke.paths import FILE_MODE

    path = admin_token_path(home)
    ensure_dir(path.parent)
    with FileLock(str(path) + ".lock", mode=FILE_MODE, timeout=10):
        token = read_admin_token(home)
        if token is None:
            token = "broke-admin-" + secrets.token_urlsafe(32)
            atomic_write(path, token.encode())
        return token
