"""A record after a hole in its partition waits for the hole: rewind once, skip until it comes back."""

from __future__ import annotations

from stream.continuity import PROCESS, REWIND_RETRY_S, STALL_S, Continuity, Verdict


def test_consecutive_records_and_replays_are_processed() -> None:
    gate = Continuity()
    assert [gate.admit("clicks", 0, offset, None, 0.0) for offset in (0, 1, 2, 1, 2, 3)] == [PROCESS] * 6


def test_a_jump_within_a_partition_rewinds_to_the_first_missing_offset() -> None:
    gate = Continuity()
    gate.admit("clicks", 0, 4, None, 0.0)
    assert gate.admit("clicks", 0, 9, None, 0.0) == Verdict(rewind_to=5, seek=True)
    assert gate.admit("clicks", 1, 9, None, 0.0) == PROCESS  # partitions are independent


def test_the_first_record_after_an_assignment_must_be_where_the_partition_starts() -> None:
    """Its committed offset, or with none the log's first: a record Faust dropped at start is sought."""
    gate = Continuity()
    assert not gate.knows("clicks", 0)
    assert gate.admit("clicks", 0, 7, 7, 0.0) == PROCESS
    assert gate.knows("clicks", 0)
    assert gate.admit("postbacks", 0, 12, 3, 0.0) == Verdict(rewind_to=3, seek=True)
    assert gate.knows("postbacks", 0)  # the start is asked for once, not per record
    assert gate.admit("postbacks", 0, 13, None, 0.1) == Verdict(rewind_to=3, seek=False)
    gate.forget()  # a rebalance: start again from the committed offsets
    assert not gate.knows("postbacks", 0)
    assert gate.admit("postbacks", 0, 3, 3, 0.0) == PROCESS


def test_records_already_in_flight_pass_unprocessed_until_the_missing_one_comes_back() -> None:
    """The rewind's replay is processed in log order; one seek, not one per stale record."""
    gate = Continuity()
    verdicts = [gate.admit("postbacks", 2, offset, 1, 0.1 * i) for i, offset in enumerate((2, 3, 4))]
    assert verdicts == [Verdict(1, seek=True), Verdict(1, seek=False), Verdict(1, seek=False)]
    replay = [gate.admit("postbacks", 2, offset, None, 0.5) for offset in (1, 2, 3, 4, 5)]
    assert replay == [PROCESS] * 5
    assert gate.admit("postbacks", 2, 7, None, 0.6) == Verdict(6, seek=True)  # a new hole, a new rewind


def test_a_rewind_that_did_not_take_is_asked_again_by_the_next_record_or_by_the_clock() -> None:
    gate = Continuity()
    gate.admit("clicks", 0, 0, None, 0.0)
    assert gate.admit("clicks", 0, 2, None, 10.0).seek
    assert not gate.admit("clicks", 0, 3, None, 10.0 + REWIND_RETRY_S / 2).seek
    assert gate.admit("clicks", 0, 2, None, 10.0 + REWIND_RETRY_S).seek
    # No record comes after that: the clock sees unread records (the log ends at 4) and no progress.
    assigned = [("clicks", 0, None, 4)]
    assert gate.stalled(assigned, 11.0 + STALL_S / 2) == []
    assert gate.stalled(assigned, 11.0 + STALL_S) == [("clicks", 0, 1)]
    assert gate.stalled(assigned, 11.0 + STALL_S) == []  # once per STALL_S
    assert gate.stalled(assigned, 11.0 + 2 * STALL_S) == [("clicks", 0, 1)]
    assert gate.admit("clicks", 0, 1, None, 20.0) == PROCESS
    assert gate.stalled(assigned, 20.0 + STALL_S) == [("clicks", 0, 2)]  # 2 and 3 still unread
    for offset in (2, 3):
        gate.admit("clicks", 0, offset, None, 30.0)
    assert gate.stalled(assigned, 100.0) == []  # caught up with the log's end


def test_a_hole_at_the_end_of_a_partition_is_found_without_a_later_record() -> None:
    """After a rebalance nothing may arrive at all: the partition starts at 5, its log ends at 9."""
    gate = Continuity()
    assigned = [("postbacks", 1, 5, 9), ("postbacks", 2, 3, 3)]
    assert gate.stalled(assigned, 0.0) == []  # first seen: Faust gets its time to deliver
    assert gate.knows("postbacks", 1)
    assert gate.stalled(assigned, STALL_S) == [("postbacks", 1, 5)]  # partition 2 holds nothing unread
    assert gate.admit("postbacks", 1, 7, None, STALL_S + 0.1) == Verdict(rewind_to=5, seek=True)


def test_the_commit_limit_follows_finished_records_and_stops_at_a_hole() -> None:
    gate = Continuity()
    assert gate.commit_limit("clicks", 0) == 0  # nothing finished: nothing to commit
    for offset in (5, 6):
        assert gate.admit("clicks", 0, offset, 5, 0.0) == PROCESS
        gate.done("clicks", 0, offset)
    assert gate.commit_limit("clicks", 0) == 7
    assert gate.admit("clicks", 0, 9, None, 0.0).rewind_to == 7  # 9 is neither processed nor done
    assert gate.commit_limit("clicks", 0) == 7
    gate.done("clicks", 0, 5)  # a replay finishing again does not move it back
    assert gate.commit_limit("clicks", 0) == 7
    gate.forget()
    assert gate.commit_limit("clicks", 0) == 0


def test_a_hole_the_log_no_longer_holds_is_skipped() -> None:
    gate = Continuity()
    gate.admit("clicks", 0, 3, 3, 0.0)
    assert gate.admit("clicks", 0, 50, None, 0.0).rewind_to == 4
    gate.skip_to("clicks", 0, 40)  # retention deleted 4..39 before they were read
    assert gate.admit("clicks", 0, 40, None, 100.0) == PROCESS
