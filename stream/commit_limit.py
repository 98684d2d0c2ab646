"""Faust's consumer, made to commit no further than the agent has finished, record by record.

Why. Faust decides what to commit from its own bookkeeping: offsets the stream acked,
plus "gaps" it counts as done whenever fetched offsets jump (meant for transaction
markers and compacted records). Three ways that bookkeeping reaches past a record our
agent never finished, each seen or read here:

- a jump in fetched offsets, e.g. records still in flight after a seek back, adds the
  jumped range *including the record being delivered* to the gaps, counted as done as
  soon as a later offset is acked;
- the check for a hole before the first acked record only refuses a hole of more than
  one record (`min(acked) - committed > 1`), and none at all while the committed offset
  is 0;
- a record the stream drops (fetched under an older generation, or while flow was
  paused) is simply not there.

Committing past an unfinished record loses its outcome on the next crash. On the click and
clock paths the outputs go out before the state is written, so a commit landing between the
two means a restart does not read the click again and refuses its held postbacks a second
time, differently: what one CI run of the SIGKILL test in tests/integration/test_stream.py
saw (a refusal emitted with its click and again as `unknown_click`).

So the consumer asks the app for a limit per partition (stream/continuity.py: one past
the last offset the agent finished, with no hole before it) and never commits beyond it.
Nothing is put back on Faust's list: an offset beyond the limit was not finished, so the
agent acknowledges it again when it does finish it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

log = logging.getLogger(__name__)

#: The exclusive offset up to which a partition may be committed; None: not a partition we limit.
CommitLimit = Callable[[TP], int | None]


def no_limit(tp: TP) -> int | None:
    return None


class CommitLimitedConsumer(Consumer):
    commit_limit: CommitLimit = staticmethod(no_limit)

    def _new_offset(self, tp: TP) -> int | None:
        offset: int | None = super()._new_offset(tp)
        limit = self.commit_limit(tp)
        if offset is None or limit is None or offset <= limit:
            return offset
        log.warning(
            "commit held back to what the agent finished",
            extra={"topic": tp.topic, "partition": tp.partition, "faust_offset": offset, "limit": limit},
        )
        committed = self._committed_offset[tp] or 0  # Faust keeps a committed 0 as None
        return limit if limit > committed else None
