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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

Headers = list[tuple[str, bytes]]  # aiokafka's batch builder takes a list (None: no headers)


class Outgoing(NamedTuple):
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
    def __init__(self, producer: Any) -> None:
        self._producer = producer  # aiokafka.AIOKafkaProducer, started
        self._known: set[str] = set()

    async def send(self, records: Iterable[Outgoing]) -> list[SentBatch]:
        """Append every record to its partition's batch, then hand each batch over in turn."""
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
        sent = []
        for (topic, partition), builders in batches.items():
            for builder in builders:
                count = builder.record_count()
                delivery = await producer.send_batch(builder, topic, partition=partition)
                sent.append(SentBatch(topic, partition, count, delivery))
        return sent

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
