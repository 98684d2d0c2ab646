"""faust.App with the two safeguards the stream's at-least-once promise rests on.

- Its producer buffer drains every table write before offsets are committed
  (stream/changelog_buffer.py).
- Its consumer commits a partition no further than the app's `commit_limit` allows
  (stream/commit_limit.py); stream/app.py sets it to what the agent has finished.
- Its consumer hands the source topics' records to the agent a fetch at a time
  (stream/source_batches.py), not one Faust message each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP
from faust.types.transports import ConsumerT, ProducerT

from stream.changelog_buffer import DrainingProducerBuffer
from stream.commit_limit import CommitLimit, no_limit
from stream.source_batches import BatchConsumer, SourceBatch


async def _no_batches(batch: SourceBatch) -> None:
    raise RuntimeError("source records fetched before the stream app wired its agent")


async def _idle() -> None:
    return None


class StreamFaustApp(faust.App):
    commit_limit: CommitLimit = staticmethod(no_limit)
    #: Topics whose records the consumer hands over a fetch at a time, and where (stream/source_batches.py).
    source_topics: frozenset[str] = frozenset()
    on_source_batch: Callable[[SourceBatch], Awaitable[None]] = staticmethod(_no_batches)
    source_batch_idle: Callable[[], Awaitable[None]] = staticmethod(_idle)
    #: The longest the consumer's fetches wait at the broker (stream/source_batches.py); Faust's
    #: own until the stream app sets STREAM_FETCH_MAX_WAIT_MS.
    fetch_max_wait_ms: int = 1500

    def _new_producer(self) -> ProducerT:
        producer = super()._new_producer()
        if self.conf.producer_threaded:
            raise ValueError("the threaded producer keeps its own buffer; it is not supported here")
        buffer = DrainingProducerBuffer(loop=producer.loop, beacon=producer.beacon)
        buffer.app = self
        producer.buffer = buffer  # before the producer starts: it adds its buffer as a dependency then
        return producer

    def _new_consumer(self) -> ConsumerT:
        transport = self.transport
        if transport.Consumer is not Consumer:
            raise ValueError(f"only the aiokafka transport is supported, not {transport.Consumer!r}")
        consumer = BatchConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )
        consumer.commit_limit = self._limit
        return consumer

    def _limit(self, tp: TP) -> int | None:
        return self.commit_limit(tp)
