"""Which Kafka offset of a partition may be committed: only up to what is fully decided. Pure.

Deliveries finish out of order (a slow destination, a retry in ten minutes), so the
committed offset is the oldest offset with a delivery still undecided; everything
before it is delivered, dead-lettered or needed nothing. After a crash the worker
re-reads from there and skips what its recorded delivery states say is decided.
"""

from __future__ import annotations


class PartitionProgress:
    def __init__(self, position: int | None = None) -> None:
        # Offset -> deliveries still undecided for it (a stream replay can put one delivery at two offsets).
        self._pending: dict[int, int] = {}
        self._next = position  # one past the highest offset seen (or the position we started from)

    def seen(self, offset: int, undecided: int) -> None:
        """An offset was read; `undecided` deliveries now wait on it (0: nothing to do for it)."""
        self._next = offset + 1 if self._next is None else max(self._next, offset + 1)
        if undecided:
            self._pending[offset] = self._pending.get(offset, 0) + undecided

    def done(self, offset: int) -> None:
        """One delivery waiting on `offset` is decided."""
        left = self._pending.get(offset, 0) - 1
        if left > 0:
            self._pending[offset] = left
        else:
            self._pending.pop(offset, None)

    @property
    def undecided(self) -> int:
        return sum(self._pending.values())

    def committable(self) -> int | None:
        """The offset to commit: everything before it is decided (None: nothing read yet)."""
        if self._pending:
            return min(self._pending)
        return self._next
