"""The complexity router inside the gateway: estimate a request's prompt, keep a conversation's tier
from moving down, and say what was decided in response headers."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from broke.gateway.prompts import user_turns
from broke.resolver import routes_by_complexity
from broke.state.model import TIERS, State

log = logging.getLogger("broke.gateway")
#: Conversations whose tier is remembered (least recently used are forgotten first).
STICKY_CONVERSATIONS = 10_000


@dataclass(frozen=True)
class Decision:
    p_strong: float
    prompt_complexity: float
    temperature: str

    def headers(self, tier: str) -> dict[str, str]:
        return {"x-broke-tier": tier, "x-broke-complexity": f"{self.prompt_complexity:.3f}",
                "x-broke-quality-temperature": self.temperature}


class ComplexityRouter:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._router = None
        self._loading: asyncio.Future | None = None
        self.sticky: OrderedDict[str, int] = OrderedDict()  # conversation -> highest tier index

    def warm_up(self) -> None:
        """Load (or train, the first time) the model in the background when the server starts."""
        self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))

    def _load(self):
        from broke.router.model import load_or_train

        self._router = load_or_train(self.home)
        return self._router

    async def _model(self):
        if self._router is None:
            if self._loading is None:
                self.warm_up()
            await self._loading
        return self._router

    async def decide(self, slot: str | None, state: State, payload: dict, owner: str) -> Decision | None:
        """The estimate for a request to a slot that routes by complexity (None for other slots)."""
        if slot is None or not routes_by_complexity(slot, state) or not state.router.tiers:
            return None
        turns = user_turns(payload)
        if not turns:
            return None
        from broke.router.features import conversation_text
        from broke.router.tiers import temperature

        estimate = (await self._model()).estimate(conversation_text(turns))
        p_strong = self._sticky(owner, turns[0], estimate.p_strong, state)
        return Decision(p_strong, estimate.prompt_complexity, temperature(estimate))

    def _sticky(self, owner: str, first_turn: str, p_strong: float, state: State) -> float:
        """Within one conversation (same client, same first turn) the tier only moves up."""
        key = hashlib.sha256(f"{owner}\0{first_turn}".encode()).hexdigest()
        tier = TIERS.index(state.router.tier_for(p_strong))
        highest = max(tier, self.sticky.pop(key, 0))
        self.sticky[key] = highest
        while len(self.sticky) > STICKY_CONVERSATIONS:
            self.sticky.popitem(last=False)
        floors = (0.0, state.router.balanced_from, state.router.premium_from)
        return max(p_strong, floors[highest])
