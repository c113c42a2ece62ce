"""What a client hears when a request has nothing to try: a configuration the gateway cannot fix by
itself (a missing key, an unknown backend or provider, a floating alias on a pinned slot, a backend
the running LiteLLM has not loaded) is a 400 that says what to do, so clients do not retry it for
minutes as if it were temporary; a state that passes (cooldowns, a key benched after failing auth,
a backend blocked by hand) is a 503, with Retry-After when its end is known."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from broke.health import Health
from broke.routing.resolve import FLOATING_ON_PINNED, Candidate, Resolution

#: A Retry-After for cooldowns whose end is not known (a worker restarting).
UNKNOWN_WAIT_S = 5


@dataclass(frozen=True)
class Unserved:
    status: int
    code: str
    message: str
    retry_after_s: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)} if self.retry_after_s is not None else {}


def misconfigured(candidate: Candidate) -> bool:
    """Skipped for its configuration: nothing but the user's change will make it usable."""
    reason = candidate.skip_reason
    return reason == FLOATING_ON_PINNED or reason.startswith(("missing key", "unknown backend", "unknown provider"))


def _cooldown_left(candidate: Candidate, health: Health, now: float) -> float | None:
    """Seconds until a cooling candidate's backend or key may be used again (None: not known)."""
    ends = []
    record = health.backend_record(candidate.backend, None, now)
    if record and record.effective(now) == "cooldown":
        ends.append(record.until)
    key = health.keys.get(candidate.key_env) if candidate.key_env else None
    if key and key.effective(now) == "cooldown":
        ends.append(key.until)
    if not ends or any(end is None for end in ends):
        return None
    return max(end - now for end in ends if end is not None)


def unserved(resolution: Resolution, health: Health, now: float, home: Path, *, unloaded: bool) -> Unserved:
    """The answer for a resolution none of whose candidates the gateway can try now; `unloaded`:
    it had attempts, but the running LiteLLM does not know them (added after `broke start`)."""
    slot = resolution.slot
    if unloaded:
        return Unserved(400, "restart_needed", f"slot '{slot}': its backends were added after the gateway started "
                        "and need LiteLLM's translation; run `broke restart` to load them")
    if resolution.candidates and all(misconfigured(c) for c in resolution.candidates):
        missing = next((c for c in resolution.candidates if c.skip_reason.startswith("missing key")), None)
        if missing is not None and missing.key_env:
            return Unserved(400, "configuration_error",
                            f"slot '{slot}': backend {missing.backend} needs the key variable {missing.key_env}, "
                            f"which is not set: add it to {home / '.env'} and run `broke restart`")
        return Unserved(400, "configuration_error", f"slot '{slot}': {resolution.reason}")
    cooling = [c for c in resolution.candidates if c.cooling]
    waits = [w for w in (_cooldown_left(c, health, now) for c in cooling) if w is not None]
    wait = max(math.ceil(min(waits)), 1) if waits else (UNKNOWN_WAIT_S if cooling else None)
    return Unserved(503, "no_backend", f"slot '{slot}': {resolution.reason}", wait)
