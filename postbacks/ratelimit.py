"""Token buckets: the rate limits of the ingest (per source) and the SQL endpoint (per user, per address).

Pure: the caller passes the time in, so the tests drive the clock and no limit depends on a timer.
A bucket allows `burst` requests at once and `rate` a second on average; over it, `take` answers how
long until the next one may go, which the services turn into a 429 with Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`rate` requests per second on average, up to `burst` at once."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """0.0 if the request may go ahead (and counts it), else the seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1 - 1e-9:  # float dust must not refuse a request that is due
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        return (1 - self.tokens) / self.rate

    def full_at(self, now: float) -> bool:
        """Whether idle time has refilled it: then it is no different from a new bucket."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst


class KeyedLimiter:
    """One bucket per key (a user, a client address), made on first use, bounded in number.

    Keys come from clients, so their number must not grow without bound: past `max_keys` the
    buckets that idle time has refilled are dropped (a new one would be the same), and if most
    are in use the oldest go -- those keys get a fresh burst, which is the lesser harm than
    memory taken by whoever invents addresses.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        TokenBucket(rate, burst)  # the same checks, at construction
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> float:
        """0.0 if `key` may go ahead now (and counts it), else the seconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            bucket.updated = now
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full_at(now)}
        if len(self._buckets) > self.max_keys * 3 // 4:  # so the next few new keys do not prune again
            for key in list(self._buckets)[: len(self._buckets) - self.max_keys // 2]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
