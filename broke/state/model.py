"""The typed state model: what `state.toml` holds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SCHEMA_VERSION = 1

KEY_POLICY_MODES = ("round_robin", "priority", "sticky", "rotate_on_rate_limit")
#: "priority_order" and "ordered" (its older name) try the chain in order.
MODEL_POLICY_MODES = ("priority_order", "ordered", "round_robin", "fastest", "cheapest")
BUDGET_PERIODS = ("day", "month")
#: What a request of an owner whose budget is spent gets: a 429, or only candidates that cost nothing.
ON_BUDGET = ("refuse", "fallback")
Tier = Literal["basic", "balanced", "premium"]
TIERS: tuple[Tier, ...] = ("basic", "balanced", "premium")


@dataclass
class SlotConfig:
    """Where a slot goes: its backend, then its fallback chain (backend ids or other slots)."""

    backend: str
    fallbacks: list[str] = field(default_factory=list)
    #: A pinned slot only accepts fixed-version backends; floating aliases are skipped.
    pinned: bool = False
    #: "complexity": pick a router tier per prompt (the `auto` slot always does).
    router: str = field(default="", metadata={"choices": ("", "complexity")})


@dataclass
class Access:
    """Access limits: allowed slots (empty = all) and request/token rates (0 = unlimited)."""

    slots: list[str] = field(default_factory=list)
    rpm: int = field(default=0, metadata={"min": 0})
    tpm: int = field(default=0, metadata={"min": 0})

    def allows(self, slot: str) -> bool:
        return not self.slots or slot in self.slots


@dataclass
class Budget:
    """A spending limit in USD per period (UTC day or month); 0: none."""

    usd: float = field(default=0.0, metadata={"min": 0.0})
    period: str = field(default="month", metadata={"choices": BUDGET_PERIODS})


@dataclass
class Price:
    """A backend's own prices in USD per million tokens, over LiteLLM's price map; None: the map's."""

    input: float | None = field(default=None, metadata={"min": 0.0})
    output: float | None = field(default=None, metadata={"min": 0.0})
    cache_read: float | None = field(default=None, metadata={"min": 0.0})
    cache_write: float | None = field(default=None, metadata={"min": 0.0})


#: How long a rate-limited key sits out unless its provider's key policy says otherwise.
DEFAULT_KEY_COOLDOWN_S = 60


@dataclass
class KeyPolicy:
    """How a provider's key pool is used (applied live by the gateway)."""

    mode: str = field(default="rotate_on_rate_limit", metadata={"choices": KEY_POLICY_MODES})
    cooldown_s: int = field(default=DEFAULT_KEY_COOLDOWN_S, metadata={"min": 0})
    retries: int = field(default=2, metadata={"min": 0})
    order: list[str] = field(default_factory=list)
    #: Each key of the provider may spend this much per period; a key past it sits out.
    budget: Budget = field(default_factory=Budget)


#: Whether a slot tries its candidates in cooldown last (model policy `cooldown_last`) unless told not to.
DEFAULT_COOLDOWN_LAST = True


@dataclass
class ModelPolicy:
    """How a slot's candidate backends are ordered (applied live by the gateway).

    `fastest`: within each router tier (and within the slot's chain) by the decode speed measured
    on this machine (`broke benchmark-sequential`); unmeasured backends keep their place after those.
    """

    mode: str = field(default="ordered", metadata={"choices": MODEL_POLICY_MODES})
    order: list[str] = field(default_factory=list)
    #: When true (default), candidates in cooldown are tried after every usable one, so a blip of a
    #: slot's only backend never becomes an outage; when false a request with nothing usable left
    #: fails at once. Blocked and auth-failed candidates are never tried.
    cooldown_last: bool = DEFAULT_COOLDOWN_LAST
    #: At most this many more backends after the first (None: every one in the chain).
    retries: int | None = field(default=None, metadata={"min": 0})
    #: The longest a failed backend of this slot sits out (None: the gateway's own cap).
    cooldown_s: int | None = field(default=None, metadata={"min": 0})


@dataclass
class CustomBackend:
    """A backend the user added (`broke backend add`)."""

    provider: str
    model: str
    api_base: str | None = None
    key_env: str | None = None
    pinned: bool = False
    #: A local model (provider mlx): requests one worker serves at once, its decode batch; past it the
    #: gateway sends a request to the slot's next candidate. 0: mlx_lm.server's own default.
    concurrency: int = field(default=0, metadata={"min": 0})


@dataclass
class Node:
    """A worker on another machine (`broke node add`): it serves local model `model` at `url`."""

    url: str
    model: str
    token_env: str | None = None
    machine: str | None = None  # its machine id in baselines (from its exported record), for pool weights


@dataclass
class JudgeConfig:
    """Judged samples of `auto` (off unless `slot` is set): the share of requests judged and the USD cap."""

    slot: str = ""
    rate: float = field(default=0.0, metadata={"min": 0.0})
    budget_usd: float = field(default=0.0, metadata={"min": 0.0})


@dataclass
class RecordConfig:
    """Outcome records beyond `auto`'s (always kept): the other slots recorded ("*": every slot), and whether
    each record keeps the prompt's text (off: its vector only)."""

    slots: list[str] = field(default_factory=list)
    prompt_text: bool = False

    def records(self, slot: str) -> bool:
        """Whether requests to `slot` are recorded although no router estimated them."""
        return bool(self.slots) and ("*" in self.slots or slot in self.slots)


@dataclass
class RouterConfig:
    """The complexity router: each tier's backends, and the p_strong at which a tier starts."""

    tiers: dict[str, list[str]] = field(default_factory=dict)  # basic / balanced / premium -> backends
    # Defaults: `broke router calibrate --strong-share 0.3` with the shipped model (about 30% premium).
    balanced_from: float = field(default=0.152, metadata={"min": 0.0})
    premium_from: float = field(default=0.305, metadata={"min": 0.0})
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    record: RecordConfig = field(default_factory=RecordConfig)

    def tier_for(self, p_strong: float) -> Tier:
        """The cheapest tier likely good enough for a prompt whose p_strong is given."""
        return tier_at(p_strong, self.balanced_from, self.premium_from)


def tier_at(p_strong: float, balanced_from: float, premium_from: float) -> Tier:
    """THE tier rule: premium at or above `premium_from`, balanced at or above `balanced_from`, else basic."""
    if p_strong >= premium_from:
        return "premium"
    return "balanced" if p_strong >= balanced_from else "basic"


@dataclass
class HarnessConfig:
    """Harness mode's defaults: the review policy, and the slots its verifier and adversary lanes ask."""

    policy: str = field(default="balanced", metadata={"choices": ("off", "throughput", "balanced",
                                                                  "high_assurance")})
    verifier: str = "opus"
    adversary: str = "gpt-5"


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
    prices: dict[str, Price] = field(default_factory=dict)  # backend id -> its own prices
    cost_reference: dict[str, str] = field(default_factory=dict)  # slot -> the backend savings are measured against
    #: The sandbox profile each client launches in by default (client -> normal / hardened / strict).
    sandbox: dict[str, str] = field(default_factory=dict)
    harness: HarnessConfig = field(default_factory=HarnessConfig)
