"""A batch's records handed to Kafka one partition batch at a time: one future per batch, not per record.

Why. aiokafka's `send` is a coroutine per record: it looks up the partition, appends
to the partition's open batch and returns a future of its own. Through a stream worker
that decides thousands of records per fetch, that per-record await, future and lookup
cost more than the decision. aiokafka also lets a caller build a record batch itself
(`create_batch`, `send_batch`): the records are appended to it synchronously and the
batch is handed over with one await and one future for all of them.

The records land exactly where `send` would put them: a given partition, or the
producer's own partitioner over the key (murmur2, as every Kafka client's default),
and in the order given within a partition. A batch larger than the producer's
`max_batch_size` is cut into several, handed over in order. Nothing is weakened:
the futures resolve when the broker acknowledges the batch (acks=all), and the caller
registers them where the commit waits for them (stream/changelog_buffer.py).

Handed over in the background. aiokafka keeps one undrained batch per partition: a
second `send_batch` for a partition waits until the first has gone into a produce
request, and the producer has one request in flight per broker. Awaited inline, every
fetch's sends waited for the previous fetch's round trip to the broker, and the worker
sat idle for it (the click path spent ~45% of its time there). So `send` builds the
batches, queues them with a future each and returns; one task hands the queue to
aiokafka in order (so a partition's batches keep their order, across fetches too) and
resolves each future with its batch's acknowledgement. The caller's guarantees hold
as before: a future is registered for the commit before the records are marked done,
and it resolves only on the broker's acknowledgement, or fails with the error that
stopped the hand-over (every later batch fails with it too: nothing after a lost batch
may be acknowledged as if the order held). The queue is bounded: past `max_queued`
batches, `send` waits, so a slow broker slows the worker instead of filling memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Headers = list[tuple[str, bytes]]  # aiokafka's batch builder takes a list (None: no headers)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send: `partition` None lets the producer's partitioner choose by key."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class SentBatch:
    """A batch handed to the producer: its partition, how many records, and its acknowledgement.

    The acknowledgement's result is the batch's first offset (aiokafka's RecordMetadata).
    """

    topic: str
    partition: int
    count: int
    delivery: asyncio.Future[Any]


class BatchSender:
    def __init__(self, producer: Any, max_queued: int = 512) -> None:
        self._producer = producer  # aiokafka.AIOKafkaProducer, started
        self._known: set[str] = set()
        self._queue: deque[tuple[str, int, Any, asyncio.Future[Any]]] = deque()
        self._max_queued = max_queued
        self._room = asyncio.Event()  # set while the queue has room
        self._room.set()
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def send(self, records: Iterable[Outgoing]) -> list[SentBatch]:
        """Append every record to its partition's batch, queue the batches, return their futures."""
        if self._failure is not None:
            raise self._failure
        producer = self._producer
        batches: dict[tuple[str, int], list[Any]] = {}
        partitioned: dict[str, Any] = {}
        for record in records:
            topic, partition = record.topic, record.partition
            if partition is None:
                choose = partitioned.get(topic)
                if choose is None:
                    choose = partitioned[topic] = await self._partitioner(topic)
                partition = choose(record.key)
            builders = batches.get((topic, partition))
            if builders is None:
                builders = batches[(topic, partition)] = [producer.create_batch()]
            key, value, headers = record.key, record.value, record.headers
            if builders[-1].append(timestamp=None, key=key, value=value, headers=headers) is None:
                builders.append(producer.create_batch())  # full: the next batch of this partition
                if builders[-1].append(timestamp=None, key=key, value=value, headers=headers) is None:
                    size = len(value or b"")
                    raise ValueError(f"a record of {size} bytes exceeds the producer's batch size")
        if not batches:
            return []
        loop = asyncio.get_running_loop()
        sent = []
        queue = self._queue
        for (topic, partition), builders in batches.items():
            for builder in builders:
                delivery: asyncio.Future[Any] = loop.create_future()
                queue.append((topic, partition, builder, delivery))
                sent.append(SentBatch(topic, partition, builder.record_count(), delivery))
        if self._task is None or self._task.done():  # a task while there is something to hand over
            self._task = loop.create_task(self._hand_over(), name="stream-batch-sender")
        if len(queue) >= self._max_queued:
            self._room.clear()
            await self._room.wait()
        return sent

    async def _hand_over(self) -> None:
        """The queue to aiokafka, in order; each batch's future follows its acknowledgement.

        Ends when the queue is empty (the next `send` starts another): no task outlives the
        work, so none is left pending when the worker stops.
        """
        producer, queue = self._producer, self._queue
        try:
            while queue:
                topic, partition, builder, delivery = queue[0]
                acknowledged = await producer.send_batch(builder, topic, partition=partition)
                queue.popleft()
                _follow(acknowledged, delivery)
                if not self._room.is_set() and len(queue) < self._max_queued // 2:
                    self._room.set()
        except BaseException as exc:
            self._fail(exc)
            if not isinstance(exc, Exception):
                raise

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        while self._queue:
            delivery = self._queue.popleft()[3]
            if not delivery.done():
                delivery.set_exception(self._failure)
        self._room.set()  # a waiting `send` returns; the next one raises

    async def _partitioner(self, topic: str) -> Any:
        """The producer's partitioner over the topic's partitions, as `send` would call it."""
        producer = self._producer
        if topic not in self._known:
            await producer.client._wait_on_metadata(topic)
            self._known.add(topic)
        cluster = producer.client.cluster
        every = sorted(cluster.partitions_for_topic(topic))
        available = sorted(cluster.available_partitions_for_topic(topic))
        partitioner = producer._partitioner
        chosen: dict[bytes, int] = {}  # a batch's outputs share keys (a click's): murmur2 once a key

        def choose(key: bytes | None) -> int:
            if key is None:
                keyless: int = partitioner(key, every, available)
                return keyless
            partition = chosen.get(key)
            if partition is None:
                partition = chosen[key] = partitioner(key, every, available)
            return partition

        return choose


def _follow(acknowledged: asyncio.Future[Any], delivery: asyncio.Future[Any]) -> None:
    """Resolve `delivery` as `acknowledged` resolves (aiokafka's future of the batch)."""

    def done(ack: asyncio.Future[Any]) -> None:
        if delivery.done():
            return
        if ack.cancelled():
            delivery.set_exception(asyncio.CancelledError("the producer dropped the batch"))
        elif ack.exception() is not None:
            delivery.set_exception(ack.exception())  # type: ignore[arg-type]
        else:
            delivery.set_result(ack.result())

    acknowledged.add_done_callback(done)
