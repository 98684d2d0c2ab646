"""Every source record is processed, in order: a record that arrives after a gap waits for the gap.

`clicks.raw` and `postbacks.raw` are neither compacted nor written in transactions, so
their offsets are consecutive. Faust can still hand the agent offset N+2 right after N,
or N+1 as the first record after an assignment whose committed offset is N: its stream
silently drops a record fetched under an older consumer generation or while flow was
paused, trusting a seek to bring it back, and a record fetched in that window is not
brought back (with no committed offset aiokafka does not seek at all). Its commit then
goes past the hole (it only refuses a gap of more than one record), so a crash after
that loses the record's outcome for good. The kill tests in
tests/integration/test_stream.py caught it about once in six runs.

So the agent asks `admit` before it processes a record. A record beyond the next one
expected is not processed; the agent rewinds the partition to the missing offset and
lets everything else of that partition pass unprocessed (and unacknowledged, so the
commit cannot pass the hole) until the missing record comes back. Decisions are then
taken in log order, as if nothing had happened. A rewind can fail to take: records
Faust had already fetched are delivered after the seek and move its read position past
the hole again, so the re-read hole is dropped as old. So a rewind still open after
`REWIND_RETRY_S` is asked again by the next record, and a partition that has unread
records but makes no progress is sought again by the clock (`stalled`), which also
catches a hole at the end of a partition, where no later record shows it.

The agent also reports each record it has `done` with; `commit_limit` is then one past
the last offset finished with no hole before it, the furthest Faust may commit
(stream/commit_limit.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: How long to let records already in flight drain before a rewind is considered lost.
REWIND_RETRY_S = 1.0
#: How long a partition with unread records may go without progress before it is sought again.
#: Generous: under load a partition's records can wait seconds behind others' in the fetcher,
#: and a needless seek throws away what was fetched (seen at 2 s in `postbacks bench stream`).
STALL_S = 10.0


@dataclass(frozen=True)
class Verdict:
    """What to do with one record: process it, or skip it and rewind its partition to `rewind_to`."""

    rewind_to: int | None = None
    #: Seek now (False while an earlier rewind of this partition is still expected to land).
    seek: bool = False


PROCESS = Verdict()


class Continuity:
    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._rewinding: dict[tuple[str, int], tuple[int, float]] = {}  # -> (missing offset, last seek)
        self._done: dict[tuple[str, int], int] = {}  # -> highest offset the agent finished
        self._moved: dict[tuple[str, int], float] = {}  # -> when it last made progress or was sought

    def knows(self, topic: str, partition: int) -> bool:
        """Whether the partition's position is known; if not, `admit` wants its `start`."""
        return (topic, partition) in self._next

    def admit(self, topic: str, partition: int, offset: int, start: int | None, now: float) -> Verdict:
        """Whether to process this record.

        `start` is where a partition not yet known must begin: its committed offset or,
        with none, the first offset the log still holds. None accepts whatever comes
        first. Offsets at or below the expected one pass: they are replays after a
        rewind or a restart, which decisions handle (stream/decide.py).
        """
        key = (topic, partition)
        expected = self._next.get(key, start)
        if expected is None or offset <= expected:
            self._next[key] = offset + 1
            self._rewinding.pop(key, None)
            self._moved[key] = now
            return PROCESS
        self._next[key] = expected
        pending = self._rewinding.get(key)
        if pending is not None and pending[0] == expected and now - pending[1] < REWIND_RETRY_S:
            return Verdict(rewind_to=expected, seek=False)
        self._rewinding[key] = (expected, now)
        self._moved[key] = now
        return Verdict(rewind_to=expected, seek=True)

    def done(self, topic: str, partition: int, offset: int) -> None:
        """The agent finished this record: its outputs are handed to the producer, its state written."""
        key = (topic, partition)
        self._done[key] = max(offset, self._done.get(key, offset))

    def commit_limit(self, topic: str, partition: int) -> int:
        """How far the partition may be committed (exclusive); 0 until the agent finishes one of its records.

        Every record below it was finished: `admit` lets a record through only when no
        offset before it is missing, and records are finished in the order admitted.
        """
        return self._done.get((topic, partition), -1) + 1

    def stalled(
        self, partitions: Iterable[tuple[str, int, int | None, int | None]], now: float
    ) -> list[tuple[str, int, int]]:
        """Partitions to seek again, as (topic, partition, offset): unread records, no progress for `STALL_S`.

        `partitions` are the assigned ones as (topic, partition, start, log end offset);
        `start` is needed only for a partition not known yet. This catches what no
        record reveals: a rewind that did not take, or a hole at the end of a partition
        after a rebalance (nothing later arrives to show it). A partition is given
        `STALL_S` after it is first seen here, and again after each seek.
        """
        due = []
        for topic, partition, start, end in partitions:
            key = (topic, partition)
            position = self._next.get(key, start)
            if position is None:
                continue
            self._next[key] = position
            last = self._moved.setdefault(key, now)
            if end is None or position >= end:
                self._moved[key] = now  # caught up
            elif now - last >= STALL_S:
                due.append((topic, partition, position))
                self._moved[key] = now
        return due

    def skip_to(self, topic: str, partition: int, offset: int) -> None:
        """Give up on what lies before `offset`: the log no longer holds it (retention deleted it unread)."""
        self._next[(topic, partition)] = offset
        self._rewinding.pop((topic, partition), None)

    def forget(self) -> None:
        """After a rebalance: positions start again from the committed offsets."""
        self._next.clear()
        self._rewinding.clear()
        self._done.clear()
        self._moved.clear()
