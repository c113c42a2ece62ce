"""The `auto` router's model inside the gateway: loaded (or trained) in the background at start and
refitted in the background when its labels change, and the response headers that say what it decided.
The decision itself is the resolver's."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from broke.routing.resolve import Resolution

if TYPE_CHECKING:
    from broke.router.learned import Learned

log = logging.getLogger("broke.gateway")

#: How often (at most) a request makes the gateway look, off the request path, for new labels.
LABELS_CHECK_S = 1.0


class RouterModel:
    """The estimator `resolve` uses for slots routed by complexity: the shipped prior, loaded once per
    process, with what it learned from the home's labels (refitted in a thread when they change)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._router: Learned | None = None
        self._loading: asyncio.Future[Learned] | None = None
        self._refitting: asyncio.Future[None] | None = None
        self._checked = time.monotonic()
        self._load_lock = threading.Lock()

    def warm_up(self) -> None:
        """Load (or train, the first time) the model in the background when the server starts."""
        self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))

    def _load(self) -> Learned:
        from broke.records import RecordsError
        from broke.router.learned import Learned, fit
        from broke.router.local import LocalModel
        from broke.router.model import load_or_train

        with self._load_lock:  # the warm-up and a writer thread (`loaded`) may both ask
            if self._router is not None:
                return self._router
            prior = load_or_train(self.home)
            try:
                router = fit(self.home, prior)
            except RecordsError as exc:
                log.error("the router's labels are not read (%s); `auto` uses the shipped prior", exc)
                router = Learned(prior, LocalModel.empty(prior.vector_dims()))
            router.estimate("warm up")  # the token vectors are read here, not on the first request
            self._router = router
            return router

    def loaded(self) -> Learned:
        """The model, loaded by this call if it is not yet: for threads off the event loop, never on it."""
        return self._router if self._router is not None else self._load()

    def _refit(self) -> None:
        """Fit again if the stored labels changed since the last fit."""
        from broke.router.labels import version
        from broke.router.learned import fit

        router = self._router
        try:
            if router is not None and version(self.home) != router.version:
                self._router = fit(self.home, router.prior)
        except Exception:
            log.exception("the router was not refitted; it goes on with what it learned before")

    def refit_soon(self) -> None:
        """Labels arrived (feedback): look for them at the next request."""
        self._checked = 0.0

    async def get(self) -> Learned:
        if self._router is None:
            if self._loading is None:
                self.warm_up()
            assert self._loading is not None
            return await self._loading
        now = time.monotonic()
        if now - self._checked >= LABELS_CHECK_S and (self._refitting is None or self._refitting.done()):
            self._checked = now
            self._refitting = asyncio.ensure_future(asyncio.to_thread(self._refit))
        return self._router


def decision_headers(resolution: Resolution) -> dict[str, str]:
    """What the router decided, for the client: the tier, the prompt's complexity and its colour."""
    from broke.router.tiers import temperature

    estimate = resolution.estimate
    if estimate is None or not resolution.tier:
        return {}
    return {"x-broke-tier": resolution.tier, "x-broke-complexity": f"{estimate.prompt_complexity:.3f}",
            "x-broke-quality-temperature": temperature(estimate)}
