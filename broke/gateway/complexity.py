"""The `auto` router's model inside the gateway: loaded (or trained) in the background at start, and
the response headers that say what it decided. The decision itself is the resolver's."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from broke.routing.resolve import Resolution

if TYPE_CHECKING:
    from broke.router.model import Router


class RouterModel:
    """The estimator `resolve` uses for slots routed by complexity, loaded once per process."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._router: Router | None = None
        self._loading: asyncio.Future[Router] | None = None

    def warm_up(self) -> None:
        """Load (or train, the first time) the model in the background when the server starts."""
        self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))

    def _load(self) -> Router:
        from broke.router.model import load_or_train

        self._router = load_or_train(self.home)
        return self._router

    async def get(self) -> Router:
        if self._router is None:
            if self._loading is None:
                self.warm_up()
            assert self._loading is not None
            return await self._loading
        return self._router


def decision_headers(resolution: Resolution) -> dict[str, str]:
    """What the router decided, for the client: the tier, the prompt's complexity and its colour."""
    from broke.router.tiers import temperature

    estimate = resolution.estimate
    if estimate is None or not resolution.tier:
        return {}
    return {"x-broke-tier": resolution.tier, "x-broke-complexity": f"{estimate.prompt_complexity:.3f}",
            "x-broke-quality-temperature": temperature(estimate)}
