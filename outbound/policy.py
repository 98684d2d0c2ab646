"""When to retry a postback, when to give up, and when to stop calling a destination for a while.

Pure: every function takes the time (and the random draw) as an argument, so the
policies are tested without clocks or sleeps.

- An answer is *delivered* (2xx), *retryable* (5xx, 408, 425, 429, no answer: timeout or
  connection error) or *rejected* (any other status: the destination understood and refused;
  sending the same request again would get the same answer).
- Retries back off exponentially with jitter, up to a number of requests and an age
  (since the conversion was received); then the delivery is dead-lettered.
- A destination failing again and again is paused (a circuit breaker): after `threshold`
  retryable failures in a row within `window_s`, no request goes out for `pause_s`; then a
  single probe request is let through (half-open). Its success resumes the destination;
  its failure pauses it again, twice as long each time, up to 8 times `pause_s`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DELIVERED = "delivered"
RETRYABLE = "retryable"
REJECTED = "rejected"

# Retry-worthy 4xx: request timeout, too early, too many requests (rate limited).
_RETRYABLE_4XX = frozenset({408, 425, 429})


def classify(http_status: int | None) -> str:
    """DELIVERED, RETRYABLE or REJECTED; None is no answer (timeout, connection refused or reset)."""
    if http_status is None or http_status >= 500 or http_status in _RETRYABLE_4XX:
        return RETRYABLE
    if 200 <= http_status < 300:
        return DELIVERED
    return REJECTED  # 1xx, 3xx (redirects are not followed), other 4xx


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happens after a request: outcome is delivered, retry or dead (with a reason)."""

    outcome: str
    reason: str | None = None
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    max_age_s: float
    base_s: float
    max_s: float
    jitter: float = 0.5  # a delay is cut by up to this fraction at random, so retries do not march in step

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after the `attempt`-th request failed; `rand` is a draw from [0, 1)."""
        raw: float = min(self.max_s, self.base_s * float(2 ** min(attempt - 1, 62)))
        return raw * (1.0 - self.jitter * rand)

    def after(
        self, attempt: int, http_status: int | None, now: float, deadline: float, rand: float
    ) -> Verdict:
        """The verdict on the `attempt`-th request (1-based) of a delivery that must be done by `deadline`."""
        kind = classify(http_status)
        if kind == DELIVERED:
            return Verdict("delivered")
        if kind == REJECTED:
            return Verdict("dead", "rejected")
        if attempt >= self.max_attempts:
            return Verdict("dead", "max_attempts")
        retry_at = now + self.delay(attempt, rand)
        if retry_at >= deadline:
            return Verdict("dead", "max_age")
        return Verdict("retry", None, retry_at)


CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(slots=True)
class Breaker:
    """The pause switch of one destination (times in seconds, any monotonic-enough clock)."""

    threshold: int
    window_s: float
    pause_s: float
    max_pause_factor: int = 8
    state: str = CLOSED
    failures: deque[float] = field(default_factory=deque)
    until: float = 0.0
    pauses: int = 0  # pauses in a row without a success: each one lasts twice as long
    probing: bool = False

    def allow(self, now: float) -> bool:
        """May a request start now? Call only with a request ready: it may take the probe slot."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now < self.until:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def success(self, now: float) -> bool:
        """Record an answer that proves the destination up (2xx, or a refusal); True when it resumed."""
        if self.state == OPEN:
            return False  # a request from before the pause: the probe decides
        resumed = self.state == HALF_OPEN
        self.state, self.pauses, self.probing = CLOSED, 0, False
        self.failures.clear()
        return resumed

    def failure(self, now: float) -> bool:
        """Record a retryable failure; True when it paused the destination."""
        if self.state == OPEN:
            return False
        if self.state == CLOSED:
            self.failures.append(now)
            while self.failures and self.failures[0] <= now - self.window_s:
                self.failures.popleft()
            if len(self.failures) < self.threshold:
                return False
        # closed with too many failures, or the half-open probe failed: pause.
        self.pauses += 1
        self.state, self.probing = OPEN, False
        self.until = now + self.pause_s * min(2 ** (self.pauses - 1), self.max_pause_factor)
        self.failures.clear()
        return True

    def abandon(self) -> None:
        """The request that took the probe slot was never sent: free the slot."""
        if self.state == HALF_OPEN:
            self.probing = False

    @property
    def paused(self) -> bool:
        return self.state != CLOSED

    def resumes_at(self) -> float | None:
        """When a paused destination may send its probe (None when not waiting for that)."""
        return self.until if self.state == OPEN else None
