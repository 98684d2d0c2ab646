"""The token bucket behind per-source rate limits (pure; time is passed in)."""

from __future__ import annotations

import pytest

from ingest.ratelimit import TokenBucket


def test_a_burst_goes_through_then_the_rate_holds() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    bucket.updated = 100.0
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take(100.0)
    assert wait == pytest.approx(0.1)  # one token every 1/rate seconds
    assert bucket.take(100.05) == pytest.approx(0.05)
    assert bucket.take(100.1) == 0.0


def test_idle_time_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    bucket.updated = 0.0
    bucket.take(0.0), bucket.take(0.0)
    allowed = sum(bucket.take(3600.0) == 0.0 for _ in range(10))
    assert allowed == 2


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=5)
    with pytest.raises(ValueError):
        TokenBucket(rate=5, burst=0)
