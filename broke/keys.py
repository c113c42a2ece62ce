"""Provider key pools: which key variables exist (names only; values never leave this module's callers)."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path


def key_ref(value: str) -> str:
    """A reference to a key that identifies it without revealing it (sha256 prefix of the value)."""
    import hashlib

    return "k-" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]


def key_pool(prefix: str, env: Mapping[str, str]) -> list[str]:
    """The variables of a key pool that are set: PREFIX, PREFIX_2, PREFIX_3, … in number order."""
    pattern = re.compile(rf"^{re.escape(prefix)}(?:_(\d+))?$")
    found = []
    for name, value in env.items():
        match = pattern.match(name)
        if match and value.strip():
            found.append((int(match.group(1) or 1), name))
    return [name for _, name in sorted(found)]


#: Every provider's key variables (with pools) and the fixed tokens, commented: a new home's `.env`.
ENV_TEMPLATE = Path(__file__).with_name(".env.template")


def seed_dotenv(home: Path) -> Path | None:
    """Copy the `.env` template into `home` (0600) when it has no `.env`; returns the file made, else None."""
    from broke.fileio import atomic_write

    target = home / ".env"
    if target.exists():
        return None
    atomic_write(target, ENV_TEMPLATE.read_bytes())
    return target


def provider_env(dotenv: Path) -> dict[str, str]:
    """The environment provider keys come from: `$BROKE_HOME/.env`, overridden by the process environment."""
    env: dict[str, str] = {}
    if dotenv.is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(os.environ)
    return env
