"""Which fetched records a consumer loop may still take, across rebalances and seeks.

A loop that awaits while holding a fetch (a flush, an HTTP request) can see a rebalance
seek a partition back to its committed offset in the meantime. The records it holds for
that partition then arrive again from the seek; taking both stores or fires them twice.
So every seek gets a number, the loop notes the numbers when it fetches, and a record
may be taken only while its partition's number is still the one noted. A partition is
absent until its owner has read what it needs (a plan, delivery states) and sought it.
"""

from __future__ import annotations

from collections.abc import Iterator


class ReadyPartitions:
    def __init__(self) -> None:
        self._seek_of: dict[int, int] = {}
        self._seeks = 0

    def sought(self, partition: int) -> None:
        """The partition was just sought: ready, and records fetched before are stale."""
        self._seeks += 1
        self._seek_of[partition] = self._seeks

    def discard(self, partition: int) -> None:
        self._seek_of.pop(partition, None)

    def snapshot(self) -> dict[int, int]:
        """Take this when a fetch returns; pass the partition's entry to `current`."""
        return dict(self._seek_of)

    def current(self, partition: int, seek: int | None) -> bool:
        """Whether records fetched when the partition's last seek was `seek` may still be taken."""
        return seek is not None and self._seek_of.get(partition) == seek

    def __getitem__(self, partition: int) -> int:
        return self._seek_of[partition]

    def __contains__(self, partition: object) -> bool:
        return partition in self._seek_of

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._seek_of))
