"""Per-account rate limits: a create bucket and an other-requests bucket per account, shared by
every API process through the RateLimiter port (SQLite locally, DynamoDB deployed)."""

from __future__ import annotations

from cogplane.clock import epoch
from cogplane.domain.errors import RateLimited
from cogplane.domain.ratelimit import RateDecision
from cogplane.ports import Clock, RateLimiter


def headers_for(decision: RateDecision) -> dict[str, str]:
    """Both spellings clients look for: Replicate's `ratelimit-*` and the common `X-RateLimit-*`."""
    values = {"limit": str(decision.limit), "remaining": str(decision.remaining), "reset": str(decision.reset_seconds)}
    headers = {f"ratelimit-{k}": v for k, v in values.items()}
    headers.update({f"X-RateLimit-{k.capitalize()}": v for k, v in values.items()})
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after)
    return headers


class RateLimitService:
    def __init__(self, limiter: RateLimiter, clock: Clock, *, create_per_minute: int, other_per_minute: int) -> None:
        self.limiter = limiter
        self.clock = clock
        self.per_minute = {"create": create_per_minute, "other": other_per_minute}

    def check(self, account: str, kind: str) -> RateDecision:
        """Take one request of `kind` (create | other) from the account's bucket; RateLimited
        (429 with Retry-After) when it is empty."""
        decision = self.limiter.take(f"{account}:{kind}", per_minute=self.per_minute[kind], now=epoch(self.clock))
        if not decision.allowed:
            s = "" if decision.retry_after == 1 else "s"
            raise RateLimited(
                f"Request was throttled. Expected available in {decision.retry_after} second{s}.",
                headers=headers_for(decision),
            )
        return decision
