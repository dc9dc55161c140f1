"""Per-bidder bid rate limit: a fixed one-second window, atomic in Redis across workers, in-process otherwise.

With Redis configured, INCR and EXPIRE run in one MULTI so every worker counts the same window; if Redis
fails, the in-process limiter takes over (bids must keep working with Redis down, only less strictly).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STATE_KEY = "bid_rate_limiter"
WINDOW_SECONDS = 1


class BidRateLimiter:
    """``await limiter.hit(key)`` counts one bid and answers the seconds to wait (0 when allowed)."""

    def __init__(self, rate: int, redis: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self.rate = rate
        self.redis = redis
        self.clock = clock
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key: str) -> int:
        window = int(self.clock()) // WINDOW_SECONDS
        count = None
        if self.redis is not None:
            try:
                count = await self._hit_redis(key, window)
            except Exception as exc:  # noqa: BLE001 - Redis down: fall back, never refuse bids for it
                log.warning("bid rate limit: Redis failed (%s: %s); limiting in process", type(exc).__name__, exc)
        if count is None:
            count = self._hit_local(key, window)
        return WINDOW_SECONDS if count > self.rate else 0

    async def _hit_redis(self, key: str, window: int) -> int:
        redis_key = f"sanzi:bid-rate:{key}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:  # MULTI ... EXEC
            pipe.incr(redis_key)
            pipe.expire(redis_key, WINDOW_SECONDS * 2)
            count, _ = await pipe.execute()
        return int(count)

    def _hit_local(self, key: str, window: int) -> int:
        if len(self._counts) > 10_000:  # drop windows that have passed
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
        count = self._counts.get((key, window), 0) + 1
        self._counts[(key, window)] = count
        return count


def limiter_for(state: Any) -> BidRateLimiter:
    """The app's limiter, made on first use from its settings and Redis client (tests may set their own)."""
    limiter = state.get(STATE_KEY)
    if limiter is None:
        limiter = BidRateLimiter(state.settings.bid_rate_per_second, state.get("redis"))
        state[STATE_KEY] = limiter
    return limiter
