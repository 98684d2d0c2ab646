"""Every source record is processed, in order: a record that arrives after a gap waits for the gap.

`clicks.raw` and `postbacks.raw` are neither compacted nor written in transactions, so
their offsets are consecutive. Faust can still hand the agent offset N+2 right after N,
or N+1 as the first record after an assignment whose committed offset is N: its stream
silently drops a record fetched under an older consumer generation or while flow was
paused, trusting a seek to bring it back, and a record fetched in that window is not
brought back. Its commit then goes past the hole (it only refuses a gap of more than
one record), so a crash after that loses the record's outcome for good. The kill tests
in tests/integration/test_stream.py caught it about once in six runs.

So the agent asks `admit` before it processes a record. A record beyond the next one
expected is not processed; the agent rewinds the partition to the missing offset and
lets everything else of that partition pass unprocessed (and unacknowledged, so the
commit cannot pass the hole) until the missing record comes back. Decisions are then
taken in log order, as if nothing had happened. If the rewind itself raced with records
already fetched, it is asked again after `REWIND_RETRY_S`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How long to let records already in flight drain before a rewind is considered lost.
REWIND_RETRY_S = 1.0


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

    def admit(
        self, topic: str, partition: int, offset: int, committed: Mapping[Any, Any], now: float
    ) -> Verdict:
        """Whether to process this record; `committed` (TP -> next offset) seeds a partition seen first.

        Offsets at or below the expected one pass: they are replays after a rewind or a
        restart, which decisions handle (stream/decide.py).
        """
        key = (topic, partition)
        expected = self._next.get(key)
        if expected is None:
            expected = next(
                (int(o) for tp, o in committed.items() if (tp.topic, tp.partition) == key and o), None
            )
        if expected is None or offset <= expected:
            self._next[key] = offset + 1
            self._rewinding.pop(key, None)
            return PROCESS
        pending = self._rewinding.get(key)
        if pending is not None and pending[0] == expected and now - pending[1] < REWIND_RETRY_S:
            return Verdict(rewind_to=expected, seek=False)
        self._rewinding[key] = (expected, now)
        return Verdict(rewind_to=expected, seek=True)

    def forget(self) -> None:
        """After a rebalance: positions start again from the committed offsets."""
        self._next.clear()
        self._rewinding.clear()
