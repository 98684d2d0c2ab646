"""A record after a hole in its partition waits for the hole: rewind once, skip until it comes back."""

from __future__ import annotations

from typing import NamedTuple

from stream.continuity import PROCESS, REWIND_RETRY_S, Continuity, Verdict


class TP(NamedTuple):
    topic: str
    partition: int


def test_consecutive_records_and_replays_are_processed() -> None:
    gate = Continuity()
    assert [gate.admit("clicks", 0, offset, {}, 0.0) for offset in (0, 1, 2, 1, 2, 3)] == [PROCESS] * 6


def test_a_jump_within_a_partition_rewinds_to_the_first_missing_offset() -> None:
    gate = Continuity()
    gate.admit("clicks", 0, 4, {}, 0.0)
    assert gate.admit("clicks", 0, 9, {}, 0.0) == Verdict(rewind_to=5, seek=True)
    assert gate.admit("clicks", 1, 9, {}, 0.0) == PROCESS  # partitions are independent


def test_the_first_record_after_an_assignment_must_be_the_committed_one() -> None:
    committed = {TP("clicks", 0): 7, TP("postbacks", 0): 3}
    gate = Continuity()
    assert gate.admit("clicks", 0, 7, committed, 0.0) == PROCESS
    assert gate.admit("postbacks", 0, 12, committed, 0.0) == Verdict(rewind_to=3, seek=True)
    gate.forget()  # a rebalance: start again from the committed offsets
    assert gate.admit("postbacks", 0, 3, committed, 0.0) == PROCESS


def test_records_already_in_flight_pass_unprocessed_until_the_missing_one_comes_back() -> None:
    """The rewind's replay is processed in log order; one seek, not one per stale record."""
    gate = Continuity()
    committed = {TP("postbacks", 2): 1}
    verdicts = [gate.admit("postbacks", 2, offset, committed, 0.1 * i) for i, offset in enumerate((2, 3, 4))]
    assert verdicts == [Verdict(1, seek=True), Verdict(1, seek=False), Verdict(1, seek=False)]
    replay = [gate.admit("postbacks", 2, offset, committed, 0.5) for offset in (1, 2, 3, 4, 5)]
    assert replay == [PROCESS] * 5
    assert gate.admit("postbacks", 2, 7, committed, 0.6) == Verdict(6, seek=True)  # a new hole, a new rewind


def test_a_rewind_that_did_not_take_is_asked_again() -> None:
    gate = Continuity()
    gate.admit("clicks", 0, 0, {}, 0.0)
    assert gate.admit("clicks", 0, 2, {}, 10.0).seek
    assert not gate.admit("clicks", 0, 3, {}, 10.0 + REWIND_RETRY_S / 2).seek
    assert gate.admit("clicks", 0, 2, {}, 10.0 + REWIND_RETRY_S).seek
    assert gate.admit("clicks", 0, 1, {}, 12.0) == PROCESS
