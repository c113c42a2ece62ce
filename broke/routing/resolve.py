"""THE decision point: (state, health, slot, profile, now[, conversation]) -> Resolution. Pure: no I/O.

For a slot routed by complexity (`auto`) the estimate of the conversation is made here too, so
`explain auto --prompt` and the gateway give the same tier for the same conversation.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from broke.catalog import Backend, Catalog, load_catalog
from broke.health import NEVER_TRIED, UNUSABLE, Health
from broke.keys import key_pool
from broke.routing.backends import (
    backend_chain,
    deployment_name,
    find_backend,
    is_slot_reference,
    key_variable,
    routes_by_complexity,
    tier_chain,
    worker_model,
)
from broke.routing.conversation import conversation_text
from broke.routing.rotation import NO_ROTATION, Rotation, conversation_key
from broke.state.model import DEFAULT_COOLDOWN_LAST, TIERS, Access, State

FLOATING_ON_PINNED = "floating alias on a pinned slot"


class Speed(Protocol):
    """What a backend measured on this machine (`broke benchmark-sequential`)."""

    @property
    def decode_tps(self) -> float | None: ...

    @property
    def ttft_s(self) -> float | None: ...


class Estimate(Protocol):
    """The `auto` router's view of a conversation (broke.router.model.Estimate)."""

    @property
    def p_strong(self) -> float: ...

    @property
    def prompt_complexity(self) -> float: ...


class Estimator(Protocol):
    """What estimates a conversation's text (broke.router.model.Router)."""

    def estimate(self, text: str) -> Any: ...


@dataclass(frozen=True)
class Conversation:
    """The user turns of a request, and whose they are (the tier of one conversation only moves up)."""

    turns: tuple[str, ...]
    owner: str = ""

    @property
    def key(self) -> str:
        return conversation_key(self.owner, self.turns[0])


@dataclass(frozen=True)
class Scope:
    """Whose request this is: a profile's access limits, or the state's own."""

    profile: str
    access: Access


@dataclass(frozen=True)
class Candidate:
    """One backend × key a request for the slot could go to, annotated."""

    backend: str
    provider: str
    key_env: str | None  # the key variable's name (never its value); None = no key needed
    key_present: bool
    source: str  # primary / fallback / via slot X / model policy
    pinned: bool | None  # None: unknown backend
    model_health: str
    key_health: str
    skip_reason: str = ""  # "" = usable
    decode_tps: float | None = None  # measured on this machine (`broke benchmark-sequential`), if it was
    ttft_s: float | None = None
    busy: bool = False  # usable, but its workers are all at their concurrency limit: tried after the others
    last_resort: bool = False  # in cooldown, tried after every usable one (model policy `cooldown_last`)
    #: The backend's definition, looked up once (None: an unknown backend)
    definition: Backend | None = field(default=None, compare=False, repr=False)

    @property
    def usable(self) -> bool:
        return not self.skip_reason

    @property
    def cooling(self) -> bool:
        """Skipped only for a cooldown (backend or key); never for blocked, failed auth or config."""
        return (self.skip_reason in ("backend cooldown", "key cooldown")
                and self.model_health not in NEVER_TRIED and self.key_health not in NEVER_TRIED)

    @property
    def deployment(self) -> str:
        """The concrete deployment name the gateway asks LiteLLM for."""
        return deployment_name(self.backend, self.key_env)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "definition"}
        return {**data, "usable": self.usable, "deployment": self.deployment}


@dataclass(frozen=True)
class Resolution:
    slot: str
    requested: str
    generation: int
    profile: str
    candidates: tuple[Candidate, ...]
    chosen: Candidate | None
    reason: str = ""  # why nothing was chosen
    allowed: bool = True  # False: the profile's access limits exclude the slot
    tier: str = ""  # the router tier a prompt picked ("" when no router decided)
    p_strong: float | None = None  # the router's estimate that picked the tier
    notes: tuple[str, ...] = field(default=())  # chain problems: cycles, unknown slot references
    #: What the gateway tries, in order (`chosen` is the first): the usable candidates, busy ones
    #: after the others, then (model policy `cooldown_last`) those in cooldown; blocked never.
    attempts: tuple[Candidate, ...] = field(default=())
    cooldown_last: bool = False  # the slot's model policy lets cooldown candidates be tried last
    #: The router's estimate of the conversation, when this resolution made one
    estimate: Estimate | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "requested": self.requested,
            "generation": self.generation,
            "profile": self.profile,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "reason": self.reason,
            "allowed": self.allowed,
            "tier": self.tier,
            "p_strong": self.p_strong,
            "notes": list(self.notes),
            "cooldown_last": self.cooldown_last,
            "attempts": [c.deployment for c in self.attempts],
            "candidates": [c.to_dict() for c in self.candidates],
        }


def _policy_ordered(items: list[str], order: Sequence[str]) -> list[str]:
    """`items` with those named in `order` first (in that order), the rest as they were."""
    first = [name for name in order if name in items]
    return first + [name for name in items if name not in first]


def _within_groups(items: list[str], sources: Mapping[str, str], rank: Callable[[str], float]) -> list[str]:
    """`items` by `rank` within each router tier (and within the slot's own chain); ties keep their order."""
    def group(backend: str) -> str:
        return sources[backend] if sources[backend].startswith("tier ") else ""

    groups = list(dict.fromkeys(group(b) for b in items))
    return sorted(items, key=lambda b: (groups.index(group(b)), rank(b)))


def _fastest_first(items: list[str], sources: Mapping[str, str], speeds: Mapping[str, Speed]) -> list[str]:
    """The fastest measured backend first; unmeasured ones keep their order, after the measured ones."""
    def rank(backend: str) -> float:
        speed = speeds.get(backend)
        return -speed.decode_tps if speed and speed.decode_tps else float("inf")

    return _within_groups(items, sources, rank)


def _cheapest_first(items: list[str], sources: Mapping[str, str], cost: Callable[[str], float | None]) -> list[str]:
    """The cheapest backend for the request first; unpriced ones keep their order, after the priced ones."""
    def rank(backend: str) -> float:
        usd = cost(backend)
        return float("inf") if usd is None else usd

    return _within_groups(items, sources, rank)


def _rotated(items: list[str], turn: int) -> list[str]:
    if not items:
        return items
    start = turn % len(items)
    return items[start:] + items[:start]


def _key_order(pool: list[str], provider: str, state: State, rotation: Rotation) -> list[str]:
    """The provider's keys in the order its key policy asks for now."""
    policy = state.key_policy.get(provider)
    if policy is None:
        return pool
    keys = _policy_ordered(pool, policy.order)
    sticky = rotation.sticky_keys.get(provider)
    if policy.mode == "round_robin":
        keys = _rotated(keys, rotation.turns.get(f"provider:{provider}", 0))
    elif policy.mode == "sticky" and sticky in keys:
        keys = _policy_ordered(keys, [sticky])
    return keys


def _candidates_for(
    backend_id: str, source: str, state: State, health: Health, env: Mapping[str, str],
    now: float, catalog: Catalog, pinned_slot: bool, rotation: Rotation, speed: Speed | None,
) -> list[Candidate]:
    backend = find_backend(backend_id, state, catalog)
    worker = worker_model(backend_id, backend.provider, catalog) if backend else None
    model_health = health.model_status(backend_id, now, worker)
    if backend is None:
        provider_name = backend_id.partition("/")[0]
        return [Candidate(backend_id, provider_name, None, False, source, None, model_health, "unknown",
                          f"unknown backend '{backend_id}'")]
    provider = catalog.providers.get(backend.provider)
    prefix = key_variable(backend, catalog)
    entries: list[tuple[str | None, bool]]
    if prefix:
        keys = _key_order(key_pool(prefix, env), backend.provider, state, rotation)
        entries = [(key, True) for key in keys] or [(prefix, False)]
    else:
        entries = [(None, True)]
    out = []
    for key_env, present in entries:
        key_health = health.key_status(key_env, now) if key_env else "unknown"
        if provider is None:
            skip = f"unknown provider '{backend.provider}'"
        elif pinned_slot and backend.floating:
            skip = FLOATING_ON_PINNED
        elif not present:
            skip = f"missing key {key_env}"
        elif model_health in UNUSABLE:
            skip = f"backend {model_health}"
        elif key_health in UNUSABLE:
            skip = f"key {key_health}"
        else:
            skip = ""
        out.append(Candidate(backend_id, backend.provider, key_env, present, source,
                             backend.pinned, model_health, key_health, skip,
                             speed.decode_tps if speed else None, speed.ttft_s if speed else None,
                             busy=not skip and backend_id in rotation.busy, definition=backend))
    return out


def _slot_paths(slot: str, state: State) -> dict[str, list[str]]:
    """Each slot the chain of `slot` reaches, with the slots it went through to get there (the
    first way there, as `backend_chain` walks it: that is the one a "via slot X" source names)."""
    paths: dict[str, list[str]] = {}

    def follow(current: str, path: list[str]) -> None:
        config = state.slots[current]
        for entry in [config.backend, *config.fallbacks]:
            if is_slot_reference(entry) and entry in state.slots and entry not in path:
                paths.setdefault(entry, [*path[1:], entry])
                follow(entry, [*path, entry])

    follow(slot, [slot])
    return paths


def _scoped(candidates: tuple[Candidate, ...], slot: str, state: State, scope: Scope) -> tuple[Candidate, ...]:
    """The candidates reached through a slot the scope does not allow, skipped: a fallback to
    another slot is checked like a request for it, and the chain stops there."""
    paths = _slot_paths(slot, state)
    who = f"profile '{scope.profile}'" if scope.profile else "the access limits"
    out = []
    for candidate in candidates:
        via = candidate.source.removeprefix("via slot ") if candidate.source.startswith("via slot ") else ""
        barred = next((s for s in paths.get(via, []) if not scope.access.allows(s)), "")
        if barred:
            candidate = replace(candidate, skip_reason=f"via slot {barred}: not allowed by {who}", busy=False)
        out.append(candidate)
    return tuple(out)


def attempt_order(candidates: tuple[Candidate, ...], state: State, cooldown_last: bool) -> tuple[Candidate, ...]:
    """The candidates a request tries, in order: usable ones (busy ones after the others), then
    those in cooldown when the slot's policy allows it; at most `retries + 1` keys per backend."""
    ready = [c for c in candidates if c.usable and not c.busy]
    busy = [c for c in candidates if c.usable and c.busy]
    cooling = [replace(c, last_resort=True) for c in candidates if cooldown_last and c.cooling]
    out: list[Candidate] = []
    per_backend: Counter[str] = Counter()
    for candidate in ready + busy + cooling:
        policy = state.key_policy.get(candidate.provider)
        if policy and per_backend[candidate.backend] > policy.retries:
            continue
        per_backend[candidate.backend] += 1
        out.append(candidate)
    return tuple(out)


def _estimated(state: State, conversation: Conversation, estimator: Estimator,
               rotation: Rotation) -> tuple[Estimate, float]:
    """The router's estimate of a conversation, and its p_strong raised to the tier it already reached."""
    estimate: Estimate = estimator.estimate(conversation_text(conversation.turns))
    reached = rotation.tier_floors.get(conversation.key, 0)
    floors = (0.0, state.router.balanced_from, state.router.premium_from)
    return estimate, max(estimate.p_strong, floors[reached])


def resolve(
    requested: str,
    state: State,
    health: Health,
    *,
    env: Mapping[str, str],
    now: float,
    scope: Scope | None = None,
    catalog: Catalog | None = None,
    rotation: Rotation = NO_ROTATION,
    p_strong: float | None = None,
    conversation: Conversation | None = None,
    estimator: Estimator | None = None,
    speeds: Mapping[str, Speed] | None = None,
    cost: Callable[[str], float | None] | None = None,
) -> Resolution:
    """Resolve a requested model name (slot or client alias) to ordered candidates and a choice.

    A slot routed by complexity picks its tier from `p_strong`, or from `estimator`'s estimate of
    `conversation` (within a conversation, `rotation.tier_floors` keeps the tier from moving down).
    `speeds`: backend id -> what it measured on this machine; shown on candidates, and the order
    of a slot whose model policy is `fastest`. `cost`: what the request is expected to cost on a backend
    (None: unpriced), the order of a slot whose model policy is `cheapest`.

    Raises NotFoundError for a name that maps to no slot.
    """
    catalog = catalog or load_catalog()
    slot = catalog.require_slot(requested)
    scope = scope or Scope(state.active_profile, state.access)
    chain, notes = backend_chain(slot, state)
    tier, estimate = "", None
    by_complexity = routes_by_complexity(slot, state)
    if by_complexity and p_strong is None and estimator is not None and conversation and conversation.turns:
        estimate, p_strong = _estimated(state, conversation, estimator, rotation)
    if p_strong is not None and by_complexity:
        if state.router.tiers:
            tier = state.router.tier_for(p_strong)
            routed = tier_chain(tier, state)
            chain = routed + [(b, s) for b, s in chain if b not in dict(routed)]
        else:
            notes.append("no router tiers configured (`broke router tier`): the slot's own chain is used")
    sources = dict(chain)
    policy = state.model_policy.get(slot)
    order = _policy_ordered(list(sources), policy.order) if policy else list(sources)
    if policy and policy.mode == "round_robin":
        order = _rotated(order, rotation.turns.get(f"slot:{slot}", 0))
    elif policy and policy.mode == "fastest":
        order = _fastest_first(order, sources, speeds or {})
    elif policy and policy.mode == "cheapest":
        order = _cheapest_first(order, sources, cost or (lambda _: None))
    pinned_slot = state.slots[slot].pinned
    candidates = tuple(
        candidate
        for backend_id in order
        for candidate in _candidates_for(backend_id, sources[backend_id], state, health, env, now,
                                         catalog, pinned_slot, rotation, (speeds or {}).get(backend_id))
    )
    if scope.access.slots:
        candidates = _scoped(candidates, slot, state, scope)
    cooldown_last = policy.cooldown_last if policy else DEFAULT_COOLDOWN_LAST
    attempts = attempt_order(candidates, state, cooldown_last)
    if policy and policy.retries is not None:  # the first backend, then at most `retries` more
        tried = list(dict.fromkeys(c.backend for c in attempts))[:policy.retries + 1]
        attempts = tuple(c for c in attempts if c.backend in tried)
    reason = ""
    allowed = scope.access.allows(slot)
    if not allowed:
        attempts = ()
        who = f"profile '{scope.profile}'" if scope.profile else "the access limits"
        reason = f"slot '{slot}' is not allowed by {who} (allowed: {', '.join(scope.access.slots)})"
    elif not attempts:
        first = candidates[0] if candidates else None
        reason = "no usable candidate" + (f": {first.backend}: {first.skip_reason}" if first else "")
        if len(candidates) > 1:
            reason += f" (and {len(candidates) - 1} more unusable)"
        if any(c.cooling for c in candidates):
            reason += (f"; candidates in cooldown are not tried (`broke model-policy {slot} --cooldown-last` "
                       "tries them last)")
    chosen = attempts[0] if attempts else None
    return Resolution(slot, requested, state.generation, scope.profile, candidates, chosen, reason,
                      allowed, tier, p_strong, tuple(notes), attempts, cooldown_last, estimate)


def tier_index(tier: str) -> int:
    """A tier's rank, cheapest first."""
    return TIERS.index(tier)
