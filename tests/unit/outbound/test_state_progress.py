"""What a restarted worker does with a recorded state, and which offsets may be committed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outbound.progress import PartitionProgress
from outbound.state import DEAD, DELIVERED, RETRY, SENDING, DeliveryState, Resume, resume


def test_resume_from_each_recorded_state() -> None:
    assert resume(None, 100.0) == Resume(0, 100.0)
    assert resume(DeliveryState(DELIVERED, 1), 100.0) is None
    assert resume(DeliveryState(DEAD, 4), 100.0) is None
    assert resume(DeliveryState(RETRY, 2, next_attempt_at=130.0), 100.0) == Resume(2, 130.0)
    # A request was on the wire when the worker stopped: maybe delivered, maybe not.
    assert resume(DeliveryState(SENDING, 3), 100.0) == Resume(3, 100.0, uncertain=True)


def test_state_from_a_record() -> None:
    record = {"state": RETRY, "attempt": 2, "updated_at": 5_000, "next_attempt_at": 9_500, "http_status": 503}
    assert DeliveryState.from_record(record) == DeliveryState(RETRY, 2, 5.0, 9.5, 503)


def test_commit_stops_at_the_oldest_undecided_offset() -> None:
    progress = PartitionProgress(10)
    assert progress.committable() == 10
    progress.seen(10, 0)
    progress.seen(11, 1)
    progress.seen(12, 0)
    progress.seen(13, 1)
    assert progress.committable() == 11
    progress.done(13)
    assert progress.committable() == 11
    progress.done(11)
    assert progress.committable() == 14 and progress.undecided == 0


def test_a_delivery_seen_at_two_offsets_holds_both() -> None:
    progress = PartitionProgress()
    assert progress.committable() is None
    progress.seen(5, 1)
    progress.seen(8, 1)  # the stream replayed the same version
    progress.done(5)
    assert progress.committable() == 8
    progress.done(8)
    assert progress.committable() == 9


@given(st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=40), st.randoms())
def test_never_commits_past_an_undecided_offset(jobs: list[int], rng: object) -> None:
    progress = PartitionProgress(0)
    undecided = [offset for offset, n in enumerate(jobs) for _ in range(n)]
    for offset, n in enumerate(jobs):
        progress.seen(offset, n)
    rng.shuffle(undecided)  # type: ignore[attr-defined]
    while undecided:
        committable = progress.committable()
        assert committable is not None and committable <= min(undecided)
        progress.done(undecided.pop())
    assert progress.committable() == len(jobs)
