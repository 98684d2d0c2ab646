"""Skipped source records are noticed: within a partition and against the committed offset."""

from __future__ import annotations

from typing import NamedTuple

from stream.continuity import Continuity


class TP(NamedTuple):
    topic: str
    partition: int


def test_consecutive_records_and_replays_are_no_gap() -> None:
    seen = Continuity()
    assert [seen.gap("clicks", 0, offset, {}) for offset in (0, 1, 2, 1, 2, 3)] == [None] * 6


def test_a_jump_within_a_partition_is_a_gap() -> None:
    seen = Continuity()
    seen.gap("clicks", 0, 4, {})
    assert seen.gap("clicks", 0, 9, {}) == 5
    assert seen.gap("clicks", 1, 9, {}) is None  # partitions are independent


def test_the_first_record_after_an_assignment_must_be_the_committed_one() -> None:
    committed = {TP("clicks", 0): 7, TP("postbacks", 0): 3}
    seen = Continuity()
    assert seen.gap("clicks", 0, 7, committed) is None
    assert seen.gap("postbacks", 0, 12, committed) == 3
    seen.forget()  # a rebalance: start again from the committed offsets
    assert seen.gap("clicks", 0, 7, committed) is None
