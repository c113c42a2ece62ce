"""Rotation: round-robin turns, sticky keys and the tiers conversations reached, and how they move.

`Rotation` is the read-only view the resolver orders candidates by; `RotationState` is the gateway's
live copy, moved on each request (turns), success (sticky keys) and failure (a failed sticky key
is forgotten). The CLI resolves with `NO_ROTATION`.
"""
from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from broke.state.model import State

#: Conversations whose tier is remembered (least recently used are forgotten first).
STICKY_CONVERSATIONS = 10_000


@dataclass(frozen=True)
class Rotation:
    """The gateway's runtime view: round-robin and sticky positions, busy workers (empty for the CLI)."""

    turns: Mapping[str, int] = field(default_factory=dict)  # "slot:NAME" / "provider:NAME" -> count
    sticky_keys: Mapping[str, str] = field(default_factory=dict)  # provider -> last key that worked
    busy: frozenset[str] = frozenset()  # local backends whose workers are all at their concurrency limit
    #: conversation key -> the highest tier index it reached (within a conversation the tier only moves up)
    tier_floors: Mapping[str, int] = field(default_factory=dict)


NO_ROTATION = Rotation()


def conversation_key(owner: str, first_turn: str) -> str:
    """What identifies a conversation: the same client and the same first user turn."""
    return hashlib.sha256(f"{owner}\0{first_turn}".encode()).hexdigest()


class RotationState:
    """The gateway's live rotation: each transition is one method."""

    def __init__(self) -> None:
        self.turns: Counter[str] = Counter()
        self.sticky_keys: dict[str, str] = {}
        self.tier_floors: OrderedDict[str, int] = OrderedDict()

    def view(self, busy: frozenset[str], conversation: str | None = None) -> Rotation:
        """A snapshot for one resolution (only this conversation's floor is copied)."""
        floors = {}
        if conversation is not None and conversation in self.tier_floors:
            floors[conversation] = self.tier_floors[conversation]
        return Rotation(dict(self.turns), dict(self.sticky_keys), busy, floors)

    def advance(self, slot: str, providers: Iterable[str], state: State) -> None:
        """A request was admitted: round-robin policies move one step."""
        policy = state.model_policy.get(slot)
        if policy and policy.mode == "round_robin":
            self.turns[f"slot:{slot}"] += 1
        for provider in set(providers):
            key_policy = state.key_policy.get(provider)
            if key_policy and key_policy.mode == "round_robin":
                self.turns[f"provider:{provider}"] += 1

    def reached(self, conversation: str, tier_index: int) -> None:
        """A conversation was sent to a tier: later turns go no lower."""
        highest = max(tier_index, self.tier_floors.pop(conversation, 0))
        self.tier_floors[conversation] = highest
        while len(self.tier_floors) > STICKY_CONVERSATIONS:
            self.tier_floors.popitem(last=False)

    def succeeded(self, provider: str, key_env: str | None) -> None:
        """A key answered: sticky key policies keep using it."""
        if key_env:
            self.sticky_keys[provider] = key_env

    def key_failed(self, provider: str, key_env: str | None) -> None:
        """A key failed (rate limit, auth): a sticky policy no longer prefers it."""
        if key_env and self.sticky_keys.get(provider) == key_env:
            del self.sticky_keys[provider]
