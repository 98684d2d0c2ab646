"""Notice when the records of a source partition do not follow each other.

`clicks.raw` and `postbacks.raw` are neither compacted nor written in transactions, so
their offsets are consecutive. A worker that reads offset N+5 right after N, or whose
first record after an assignment lies beyond the committed offset, has skipped records,
and at-least-once would be broken without a trace. The agent reports it loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Continuity:
    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def gap(self, topic: str, partition: int, offset: int, committed: Mapping[Any, Any]) -> int | None:
        """The first skipped offset when `offset` does not follow what came before, else None.

        `committed` (Faust's view: TP -> the next offset to read) seeds a partition seen
        for the first time since the worker started or was assigned it again.
        """
        key = (topic, partition)
        expected = self._next.get(key)
        if expected is None:
            expected = next(
                (int(o) for tp, o in committed.items() if (tp.topic, tp.partition) == key and o), None
            )
        self._next[key] = offset + 1
        return expected if expected is not None and offset > expected else None

    def forget(self) -> None:
        """After a rebalance: positions start again from the committed offsets."""
        self._next.clear()
