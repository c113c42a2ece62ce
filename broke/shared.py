"""State several gateways share through Redis (`BROKE_REDIS_URL`): key and model cooldowns, profiles'
rpm/tpm windows, and budget spend. Configuration (state.toml) stays a file per home.

Redis is never in the way of a request: every call is bounded by a short timeout, and after a
failure a circuit breaker keeps Redis out for BREAKER_S (the gateway goes on with its own state and
says so). When Redis answers again, the gateway's cooldowns still running, the requests and tokens it
counted in its own rate windows meanwhile, and the spend Redis missed are written back.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broke.health import UNUSABLE, Health, HealthRecord

if TYPE_CHECKING:
    from redis.asyncio import Redis

URL_ENV = "BROKE_REDIS_URL"
#: Bound of one Redis call (seconds): a slow Redis costs a request at most this.
TIMEOUT_S = 0.25
#: After a failure, Redis is left alone this long before it is tried again.
BREAKER_S = 2.0
WINDOW_S = 60.0
#: A spend counter is kept this long past the end of its period, then Redis drops it.
SPEND_KEEP_S = 86400
PREFIX = "broke:"
log = logging.getLogger("broke.shared")

#: Atomic check-and-count of one request under every (owner, rpm, tpm): KEYS are the owners' request
#: and token windows in pairs; ARGV: now, window start, then rpm and tpm per owner, then a unique member.
ADMIT = """
local now, since = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = #KEYS / 2
for i = 1, n do
  local reqs, toks = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZREMRANGEBYSCORE', reqs, '-inf', since)
  redis.call('ZREMRANGEBYSCORE', toks, '-inf', since)
  local rpm, tpm = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  if rpm > 0 and redis.call('ZCARD', reqs) >= rpm then
    return 'rate limit: ' .. rpm .. ' requests per minute'
  end
  if tpm > 0 then
    local spent = 0
    for _, member in ipairs(redis.call('ZRANGE', toks, 0, -1)) do
      spent = spent + tonumber(string.match(member, '^(%d+):'))
    end
    if spent >= tpm then
      return 'rate limit: ' .. tpm .. ' tokens per minute'
    end
  end
end
for i = 1, n do
  redis.call('ZADD', KEYS[2 * i - 1], now, ARGV[#ARGV])
  redis.call('EXPIRE', KEYS[2 * i - 1], 120)
end
return ''
"""


def redis_url(home: Path) -> str | None:
    """BROKE_REDIS_URL from the environment, else from the home's `.env`; None: nothing is shared."""
    from broke.keys import provider_env

    return provider_env(home / ".env").get(URL_ENV) or None


def redacted(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


class Windows(Protocol):
    """A gateway's own rate windows per owner (broke.gateway.limits.RateLimiter); it counts requests
    only when Redis cannot say."""

    @property
    def requests(self) -> Mapping[str, Sequence[float]]: ...


class Shared:
    """One gateway's link to the shared Redis (or none: `url` None)."""

    def __init__(self, url: str | None, windows: Windows | None = None) -> None:
        self.url = url
        self.windows = windows  # requests counted here while Redis is down, written back when it returns
        self.unsent: deque[tuple[str, int, float]] = deque()  # tokens (owner, count, when) Redis missed
        self.pushed_until = 0.0  # requests of the own windows up to this were written back
        self.unspent: dict[str, tuple[float, float]] = {}  # spend counter -> (USD Redis missed, period end)
        self.client: Redis | None = None
        self.down_until = 0.0  # monotonic: Redis is not tried before this
        self.error = ""  # why it was last unreachable
        self.was_down = False  # reconcile when it is back
        self._admit: Any = None

    def status(self) -> str:
        """"off" (not configured), "ok", or "down: why" — for /health, `status` and `doctor`."""
        if not self.url:
            return "off"
        return f"down: {self.error}" if self.error else "ok"

    def _redis(self) -> Redis | None:
        if not self.url or time.monotonic() < self.down_until:
            return None
        if self.client is None:
            from redis.asyncio import Redis

            self.client = Redis.from_url(self.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                         retry_on_timeout=False, decode_responses=True)
            self._admit = self.client.register_script(ADMIT)
        return self.client

    def _failed(self, exc: BaseException) -> None:
        if not self.error:
            log.warning("Redis at %s unreachable (%s): going on with this gateway's own state",
                        redacted(self.url or ""), type(exc).__name__)
        self.error = f"Redis at {redacted(self.url or '')} unreachable ({type(exc).__name__})"
        self.down_until, self.was_down = time.monotonic() + BREAKER_S, True

    async def _run(self, work: Any) -> Any:
        """`work(redis)` bounded by TIMEOUT_S; None when Redis is off, broken, or fails now."""
        redis = self._redis()
        if redis is None:
            return None
        try:
            async with asyncio.timeout(TIMEOUT_S * 2):
                result = await work(redis)
        except Exception as exc:  # any Redis trouble: the request goes on with local state
            self._failed(exc)
            return None
        if self.error:
            log.info("Redis at %s is back: sharing state again", redacted(self.url or ""))
        self.error = ""
        return result

    async def admit(self, limits: list[tuple[str, int, int]], now: float) -> str | None:
        """Count one request under the shared windows: "" when it may go, why not, or None when Redis
        cannot say (the caller uses its own windows)."""
        keys = [k for owner, _, _ in limits for k in (f"{PREFIX}rpm:{owner}", f"{PREFIX}tpm:{owner}")]
        args: list[Any] = [now, now - WINDOW_S, *(v for _, rpm, tpm in limits for v in (rpm, tpm)),
                           f"{now}:{os.urandom(6).hex()}"]

        async def admit(_: Redis) -> Any:
            return await self._admit(keys=keys, args=args)

        result = await self._run(admit)
        return None if result is None else str(result)

    async def spent(self, owner: str, count: int, now: float) -> None:
        """Tokens an answer used, in the owner's shared window."""
        async def add(redis: Redis) -> Any:
            key = f"{PREFIX}tpm:{owner}"
            await redis.zadd(key, {f"{count}:{now}:{os.urandom(4).hex()}": now})
            return await redis.expire(key, 120)

        if await self._run(add) is None:
            self.unsent.append((owner, count, now))
            while self.unsent and self.unsent[0][2] <= now - WINDOW_S:
                self.unsent.popleft()

    async def add_spend(self, counts: list[tuple[str, float, float]]) -> None:
        """An answer's cost added to shared spend counters: (counter, USD, when its period ends); a
        counter outlives its period by SPEND_KEEP_S. What Redis misses is added when it returns."""
        if await self._add_spend(counts) is None:
            for counter, usd, ends in counts:
                self.unspent[counter] = (self.unspent.get(counter, (0.0, ends))[0] + usd, ends)

    async def _add_spend(self, counts: list[tuple[str, float, float]]) -> Any:
        async def add(redis: Redis) -> Any:
            pipe = redis.pipeline(transaction=False)
            for counter, usd, ends in counts:
                pipe.incrbyfloat(f"{PREFIX}spend:{counter}", usd)
                pipe.expireat(f"{PREFIX}spend:{counter}", int(ends + SPEND_KEEP_S))
            return await pipe.execute()

        return await self._run(add)

    async def spend(self, counters: list[str]) -> list[float] | None:
        """Every gateway's spend on each counter (USD), or None when Redis cannot say."""
        async def read(redis: Redis) -> Any:
            return await redis.mget([f"{PREFIX}spend:{counter}" for counter in counters])

        found = await self._run(read)
        return None if found is None else [float(value or 0.0) for value in found]

    async def cooled(self, section: str, name: str, record: HealthRecord) -> None:
        """Publish a key's (by key_ref) or model's cooldown or bench, until it ends."""
        if record.status not in UNUSABLE:
            return
        until = record.until if record.until is not None else time.time() + 3600

        async def put(redis: Redis) -> Any:
            field = f"{PREFIX}health:{section}"
            await redis.hset(field, name, f"{record.status}|{until}|{record.reason}")
            return await redis.expire(field, 3600)

        await self._run(put)

    async def overlay(self, health: Health, key_refs: Mapping[str, str], now: float) -> Health:
        """This gateway's health with the cooldowns other gateways published (keys matched by key_ref)."""
        if not self.url:
            return health
        if self.was_down and self._redis() is not None:
            await self._reconcile(health, key_refs, now)

        async def read(redis: Redis) -> Any:
            pipe = redis.pipeline(transaction=False)
            pipe.hgetall(f"{PREFIX}health:keys")
            pipe.hgetall(f"{PREFIX}health:models")
            return await pipe.execute()

        found = await self._run(read)
        if not found:
            return health
        shared_keys, shared_models = found
        keys, models = dict(health.keys), dict(health.models)
        for env, ref in key_refs.items():
            record = _record(shared_keys.get(ref), now)
            if record and (env not in keys or keys[env].effective(now) not in UNUSABLE):
                keys[env] = record
        for backend, value in shared_models.items():
            record = _record(value, now)
            if record and (backend not in models or models[backend].effective(now) not in UNUSABLE):
                models[backend] = record
        return Health(health.generation, keys, models, health.workers)

    async def _reconcile(self, health: Health, key_refs: Mapping[str, str], now: float) -> None:
        """Back after an outage: this gateway's running cooldowns, and what its own rate windows
        counted since the outage began, go to Redis for the others."""
        self.was_down = False
        await self._push_windows(now)
        missed = [(counter, usd, ends) for counter, (usd, ends) in self.unspent.items() if ends > now]
        if not missed or await self._add_spend(missed) is not None:
            self.unspent.clear()
        for env, record in health.keys.items():
            if env in key_refs and record.effective(now) in UNUSABLE:
                await self.cooled("keys", key_refs[env], record)
        for backend, record in health.models.items():
            if record.effective(now) in UNUSABLE:
                await self.cooled("models", backend, record)

    async def _push_windows(self, now: float) -> None:
        since = now - WINDOW_S
        windows = self.windows.requests.items() if self.windows is not None else ()
        requests = {owner: [t for t in times if t > max(since, self.pushed_until)] for owner, times in windows}
        tokens: dict[str, list[tuple[float, int]]] = {}
        for owner, count, when in self.unsent:
            if when > since:
                tokens.setdefault(owner, []).append((when, count))

        async def push(redis: Redis) -> Any:
            pipe = redis.pipeline(transaction=False)
            for owner, times in requests.items():
                if times:
                    pipe.zadd(f"{PREFIX}rpm:{owner}", {f"{t}:{os.urandom(6).hex()}": t for t in times})
                    pipe.expire(f"{PREFIX}rpm:{owner}", 120)
            for owner, counts in tokens.items():
                if counts:
                    pipe.zadd(f"{PREFIX}tpm:{owner}", {f"{n}:{t}:{os.urandom(4).hex()}": t for t, n in counts})
                    pipe.expire(f"{PREFIX}tpm:{owner}", 120)
            return await pipe.execute()

        if (any(requests.values()) or tokens) and await self._run(push) is None:
            return  # down again: tried at the next return
        self.unsent.clear()
        self.pushed_until = now

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def _record(value: str | None, now: float) -> HealthRecord | None:
    """A published cooldown still running, as a health record."""
    if not value:
        return None
    status, until, reason = (value.split("|", 2) + ["", ""])[:3]
    try:
        ends = float(until)
    except ValueError:
        return None
    return HealthRecord(status, ends, reason or "shared") if ends > now and status in UNUSABLE else None


def shared_status(home: Path) -> str:
    """For `status` and `doctor`: "off" (no BROKE_REDIS_URL), "ok", or why Redis does not answer
    (synchronous, bounded)."""
    url = redis_url(home)
    if not url:
        return "off"
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(url, socket_timeout=TIMEOUT_S * 2, socket_connect_timeout=TIMEOUT_S * 2).ping()
    except (RedisError, OSError, ValueError) as exc:
        return f"Redis at {redacted(url)} unreachable ({type(exc).__name__}): each gateway uses its own state"
    return "ok"
