"""Per-source request rate limits: a token bucket per source, refilled continuously.

A sender that floods (a retry storm, a misconfigured tracker replaying a day) must not
take the ingest's capacity from every other source. Over its limit a source gets 429
with Retry-After, which trackers honour by retrying later: nothing is lost, so nothing
is written to the rejected topic either (a flood there would defeat the limit).
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
