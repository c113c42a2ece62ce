"""Files under `$BROKE_HOME/run/`: the gateway record, client tokens, the LiteLLM config and logs."""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from broke.errors import StateFileError
from broke.fileio import atomic_write
from broke.keys import key_ref as key_ref  # re-exported: it lived here
from broke.paths import ensure_dir
from broke.procs import ProcessRecord

DEFAULT_PORT = 4000


def run_dir(home: Path) -> Path:
    return ensure_dir(home / "run")


@dataclass
class GatewayRecord:
    """What `broke start` launched, and what the front proxy needs to know about it."""

    front: ProcessRecord
    litellm: ProcessRecord
    deployments: list[str] = field(default_factory=list)
    key_refs: dict[str, str] = field(default_factory=dict)  # key variable -> key_ref
    first_byte_timeout_s: float = 120.0
    body_limit_bytes: int = 32 * 1024 * 1024
    local_max_tokens: int = 4096  # requests to local workers are capped to this
    #: local model -> its workers' API bases (this machine's and nodes'), for chat completions sent
    #: to them directly
    direct_workers: dict[str, list[str]] = field(default_factory=dict)
    #: forward requests that need no translation to the provider directly (BROKE_NATIVE=0: all via LiteLLM)
    native_forwarding: bool = True
    started_at: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.front.port}"


def record_path(home: Path) -> Path:
    return home / "run" / "gateway.json"


def write_record(home: Path, record: GatewayRecord) -> None:
    run_dir(home)
    atomic_write(record_path(home), (json.dumps(asdict(record), indent=1) + "\n").encode())


def read_record(home: Path) -> GatewayRecord | None:
    path = record_path(home)
    try:
        data = json.loads(path.read_text())
        data.pop("worker_tokens", None)  # written by earlier versions: the proxy now reads nodes' tokens from the state
        return GatewayRecord(
            front=ProcessRecord(**data.pop("front")), litellm=ProcessRecord(**data.pop("litellm")), **data
        )
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise StateFileError(f"{path}: not a gateway record ({exc}); remove it if no gateway runs") from None


def master_key(home: Path) -> str:
    """The internal LiteLLM master key of the running gateway (made fresh by each start)."""
    return (home / "run" / "litellm_master_key").read_text().strip()


def new_master_key(home: Path) -> str:
    """The key between the front proxy and LiteLLM: BROKE_INTERNAL_MASTER_KEY if set, else a fresh one."""
    from broke.control.tokens import MASTER_KEY_ENV, fixed_token

    key = fixed_token(home, MASTER_KEY_ENV) or "sk-broke-internal-" + secrets.token_urlsafe(24)
    atomic_write(run_dir(home) / "litellm_master_key", key.encode())
    return key


class TokenStore:
    """Client tokens: one for the user (`client`), one per profile that asked for one."""

    def __init__(self, home: Path) -> None:
        self.path = home / "run" / "tokens.json"
        self.home = home

    def load(self) -> dict[str, str]:
        """owner -> token, where owner is "client" or "profile:NAME"."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise StateFileError(f"{self.path}: not valid JSON; remove it to make new tokens") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise StateFileError(f"{self.path}: must map owners to tokens")
        return data

    def token_for(self, owner: str) -> str:
        """The owner's token, made (0600) on first use; the client's is BROKE_CLIENT_TOKEN when that is set
        (written here too, so the gateway, which reads only this file, accepts it at once)."""
        from filelock import FileLock

        from broke.control.tokens import CLIENT_TOKEN_ENV, fixed_token
        from broke.paths import FILE_MODE

        fixed = fixed_token(self.home, CLIENT_TOKEN_ENV) if owner == "client" else None
        run_dir(self.home)
        with FileLock(str(self.path) + ".lock", mode=FILE_MODE, timeout=10):
            tokens = self.load()
            if fixed and tokens.get(owner) != fixed:
                if fixed in tokens.values():
                    raise StateFileError(f"{CLIENT_TOKEN_ENV} equals a profile's token; pick another value")
                tokens[owner] = fixed
            elif owner not in tokens:
                tokens[owner] = "broke-" + secrets.token_urlsafe(32)
            else:
                return tokens[owner]
            atomic_write(self.path, (json.dumps(tokens, indent=1) + "\n").encode())
            return tokens[owner]

    def revoke(self, owner: str) -> None:
        """Remove the owner's token (a harness run's, when the run ends): requests with it are refused."""
        from filelock import FileLock

        from broke.paths import FILE_MODE

        with FileLock(str(self.path) + ".lock", mode=FILE_MODE, timeout=10):
            tokens = self.load()
            if tokens.pop(owner, None) is not None:
                atomic_write(self.path, (json.dumps(tokens, indent=1) + "\n").encode())
