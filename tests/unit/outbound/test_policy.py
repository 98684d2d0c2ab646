"""Retry, give-up and pause policies: pure, so tested with explicit times and random draws."""

from __future__ import annotations

import pytest

from outbound.policy import DELIVERED, REJECTED, RETRYABLE, Breaker, RetryPolicy, Verdict, classify

POLICY = RetryPolicy(max_attempts=5, max_age_s=3600, base_s=1.0, max_s=60.0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, DELIVERED), (204, DELIVERED), (None, RETRYABLE), (500, RETRYABLE), (503, RETRYABLE),
     (429, RETRYABLE), (408, RETRYABLE), (400, REJECTED), (404, REJECTED), (410, REJECTED),
     (301, REJECTED), (100, REJECTED)],
)  # fmt: skip
def test_classify(status: int | None, kind: str) -> None:
    assert classify(status) == kind


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens_it() -> None:
    assert [POLICY.delay(n, 0.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert POLICY.delay(3, 0.999) == pytest.approx(4 * (1 - 0.5 * 0.999))
    for n in range(1, 200):
        for r in (0.0, 0.3, 0.999):
            assert 0.5 * min(60.0, 2 ** (n - 1)) - 1e-9 <= POLICY.delay(n, r) <= 60.0


def test_verdicts() -> None:
    now, deadline = 1000.0, 1000.0 + 3600
    assert POLICY.after(1, 200, now, deadline, 0.0) == Verdict("delivered")
    assert POLICY.after(1, 404, now, deadline, 0.0) == Verdict("dead", "rejected")  # no retry on 4xx
    assert POLICY.after(1, 503, now, deadline, 0.0) == Verdict("retry", None, now + 1)
    assert POLICY.after(2, None, now, deadline, 0.0) == Verdict("retry", None, now + 2)  # timeout/refused
    assert POLICY.after(5, 503, now, deadline, 0.0) == Verdict("dead", "max_attempts")
    assert POLICY.after(3, 503, now, now + 3.5, 0.0) == Verdict("dead", "max_age")  # next one would be late
    assert POLICY.after(3, 503, now, now + 4.5, 0.0) == Verdict("retry", None, now + 4)


def test_pause_after_threshold_failures_in_a_row_within_the_window() -> None:
    b = Breaker(threshold=3, window_s=10, pause_s=5)
    assert not b.failure(0) and not b.failure(1)
    assert b.failure(2) and b.paused and b.resumes_at() == 7
    assert not b.allow(6.9)


def test_failures_spread_out_or_broken_by_a_success_do_not_pause() -> None:
    b = Breaker(threshold=3, window_s=10, pause_s=5)
    assert not b.failure(0) and not b.failure(9)
    assert not b.failure(10.5)  # the first one left the window
    b.success(11)
    assert not b.failure(12) and not b.failure(13) and b.failure(14)


def test_half_open_lets_one_probe_through_and_its_answer_decides() -> None:
    b = Breaker(threshold=2, window_s=10, pause_s=5)
    b.failure(0), b.failure(1)  # paused until 6
    assert b.allow(6) and not b.allow(6.1)  # one probe, the rest wait
    assert b.failure(7)  # the probe failed: paused again, twice as long
    assert b.resumes_at() == 17
    assert b.allow(17)
    assert b.failure(18) and b.resumes_at() == 18 + 20
    assert b.allow(38) and b.success(38)  # the probe succeeded: resumed
    assert not b.paused and b.allow(38) and b.allow(38)  # all slots again
    assert not b.failure(39)  # a fresh count, and the next pause is short again
    assert b.failure(39.5) and b.resumes_at() == 44.5


def test_the_pause_length_is_capped() -> None:
    b = Breaker(threshold=1, window_s=10, pause_s=1)
    t = 0.0
    for _ in range(10):
        b.failure(t)
        t = b.until
        assert b.allow(t)
    assert b.until - t <= 8 or b.resumes_at() is None
    b.failure(t)
    assert b.until - t == 8


def test_an_abandoned_probe_frees_the_slot_and_old_answers_do_not_decide() -> None:
    b = Breaker(threshold=1, window_s=10, pause_s=5)
    b.failure(0)
    assert not b.failure(1)  # a request from before the pause: already paused
    assert not b.success(2) and b.paused  # ...and its success does not end the pause either
    assert b.allow(5)
    b.abandon()
    assert b.allow(5.1)
