"""The token buckets behind the ingest's per-source and the SQL endpoint's per-user/-address limits (pure)."""

from __future__ import annotations

import pytest

from postbacks.ratelimit import KeyedLimiter, TokenBucket


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


def test_each_key_has_its_own_bucket() -> None:
    limiter = KeyedLimiter(rate=1, burst=2)
    assert [limiter.take("a", 10.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a", 10.0) == pytest.approx(1.0)
    assert limiter.take("b", 10.0) == 0.0  # another client is not held back by the first
    assert limiter.take("a", 11.0) == 0.0


def test_keys_made_up_by_clients_stay_bounded() -> None:
    limiter = KeyedLimiter(rate=1, burst=2, max_keys=100)
    for i in range(100):
        limiter.take(f"idle-{i}", 0.0)
    limiter.take("busy", 5.0)
    assert len(limiter) == 1  # the idle ones were full again: dropped, a new bucket is the same
    for i in range(1000):
        limiter.take(f"flood-{i}", 5.0)  # all in use at once
    assert len(limiter) <= 100
    assert limiter.take("flood-999", 5.0) == 0.0  # the newest kept their buckets...
    assert limiter.take("flood-999", 5.0) > 0.0  # ...and their counts


def test_the_ingest_uses_the_same_bucket() -> None:
    from ingest import ratelimit

    assert ratelimit.TokenBucket is TokenBucket
