"""The log rate limit holds back repeated warnings, never info records."""

from __future__ import annotations

import logging

from postbacks.logs import RateLimitFilter


def record(level: int, msg: str, created: float) -> logging.LogRecord:
    rec = logging.LogRecord("sinks.writer", level, __file__, 1, msg, None, None)
    rec.created = created
    return rec


def test_repeated_warnings_are_held_back_and_counted() -> None:
    limit = RateLimitFilter(interval_s=10)
    passed = [limit.filter(record(logging.WARNING, "insert failed", t)) for t in (0, 1, 2)]
    assert passed == [True, False, False]
    later = record(logging.WARNING, "insert failed", 11)
    assert limit.filter(later) and later.suppressed_since_last == 2


def test_info_records_always_pass() -> None:
    limit = RateLimitFilter(interval_s=10)
    assert all(limit.filter(record(logging.INFO, "re-forming an interrupted batch", t)) for t in (0, 1, 2))
