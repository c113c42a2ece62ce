"""The typed state model: what `state.toml` holds."""
from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 1

KEY_POLICY_MODES = ("round_robin", "priority", "sticky", "rotate_on_rate_limit")
MODEL_POLICY_MODES = ("ordered", "round_robin")
TIERS = ("basic", "balanced", "premium")


@dataclass
class SlotConfig:
    """Where a slot goes: its backend, then its fallback chain (backend ids or other slots)."""

    backend: str
    fallbacks: list[str] = field(default_factory=list)
    #: A pinned slot only accepts fixed-version backends; floating aliases are skipped.
    pinned: bool = False


@dataclass
class Access:
    """Access limits: allowed slots (empty = all) and request/token rates (0 = unlimited)."""

    slots: list[str] = field(default_factory=list)
    rpm: int = field(default=0, metadata={"min": 0})
    tpm: int = field(default=0, metadata={"min": 0})

    def allows(self, slot: str) -> bool:
        return not self.slots or slot in self.slots


@dataclass
class KeyPolicy:
    """How a provider's key pool is used (applied live by the gateway)."""

    mode: str = field(default="rotate_on_rate_limit", metadata={"choices": KEY_POLICY_MODES})
    cooldown_s: int = field(default=60, metadata={"min": 0})
    retries: int = field(default=2, metadata={"min": 0})
    order: list[str] = field(default_factory=list)


@dataclass
class ModelPolicy:
    """How a slot's candidate backends are ordered (applied live by the gateway)."""

    mode: str = field(default="ordered", metadata={"choices": MODEL_POLICY_MODES})
    order: list[str] = field(default_factory=list)


@dataclass
class CustomBackend:
    """A backend the user added (`broke backend add`)."""

    provider: str
    model: str
    api_base: str | None = None
    key_env: str | None = None
    pinned: bool = False


@dataclass
class Node:
    """A worker on another machine (`broke node add`): it serves local model `model` at `url`."""

    url: str
    model: str
    token_env: str | None = None


@dataclass
class RouterConfig:
    """Tiers of the complexity router for `auto` and the strong-model threshold."""

    tiers: dict[str, list[str]] = field(default_factory=dict)
    threshold: float = field(default=0.5, metadata={"min": 0.0})


@dataclass
class State:
    schema_version: int = SCHEMA_VERSION
    generation: int = field(default=0, metadata={"min": 0})
    updated_at: str = ""
    frozen: bool = False
    active_team: str = ""
    active_profile: str = ""
    slots: dict[str, SlotConfig] = field(default_factory=dict)
    access: Access = field(default_factory=Access)
    key_policy: dict[str, KeyPolicy] = field(default_factory=dict)
    model_policy: dict[str, ModelPolicy] = field(default_factory=dict)
    backends: dict[str, CustomBackend] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    router: RouterConfig = field(default_factory=RouterConfig)
