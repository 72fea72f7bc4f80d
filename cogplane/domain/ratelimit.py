"""Token buckets (pure arithmetic; the RateLimiter adapters store the buckets atomically).

A bucket holds up to `per_minute` tokens (a whole minute's worth may come as one burst) and
refills at `per_minute / 60` tokens a second. A request takes one token or is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int  # requests per minute
    remaining: int  # whole tokens left after this request
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # seconds until a refused request may succeed (0 when allowed)


def take(tokens: float | None, updated: float | None, now: float, per_minute: int) -> tuple[float, RateDecision]:
    """(tokens left, decision) for one request at `now` on a bucket last seen with `tokens` at
    `updated` (None: a new, full bucket)."""
    capacity = float(max(1, per_minute))
    rate = capacity / 60.0
    if tokens is None or updated is None:
        level = capacity
    else:
        level = min(capacity, tokens + max(0.0, now - updated) * rate)
    allowed = level >= 1.0
    if allowed:
        level -= 1.0
    retry_after = 0 if allowed else max(1, math.ceil((1.0 - level) / rate))
    reset = math.ceil((capacity - level) / rate) if level < capacity else 0
    return level, RateDecision(
        allowed=allowed,
        limit=int(capacity),
        remaining=int(math.floor(level)),
        reset_seconds=int(reset),
        retry_after=int(retry_after),
    )
