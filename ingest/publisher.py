"""Publishing to Kafka with the guarantee ingest sells: 2xx only after the broker's ack.

`acks=all` plus an idempotent producer, and every request waits for the acknowledgement of
the batch that carries its record. When the broker is slow or away, a request waits at most
`publish_timeout_s` and then gets `Unavailable` (the HTTP layer answers 503 + Retry-After,
and senders retry). In-flight requests are capped so memory stays bounded instead of
queueing without limit. A record whose wait timed out may still reach Kafka; the sender's
retry then makes a duplicate, which the stream's deduplication absorbs: at-least-once into
Kafka, exactly-once after dedup.

Why batches of our own: aiokafka's `send()` costs a future, a partition lookup and a pass
through its accumulator per record, and a timer per request came on top -- a fifth of the
ingest's CPU. Here the records of one partition that arrive within the linger go into one
`BatchBuilder`, sent with `send_batch` as aiokafka would send them; their requests wait on
that one ack, under one deadline. Partitioning is aiokafka's own (the same function `send()`
uses), so a key keeps its partition and, batches of a partition being sent one after the
other, its order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from postbacks.murmur2 import KeyPartitioner
from postbacks.settings import Settings

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The broker did not acknowledge in time, or too many requests are already waiting."""


class _Group:
    """Records of one partition sent together: one batch, one ack, one deadline for their requests."""

    __slots__ = ("batch", "deadline", "partition", "topic", "waiters")

    def __init__(self, topic: str, partition: int, batch: Any) -> None:
        self.topic, self.partition, self.batch = topic, partition, batch
        self.waiters: list[asyncio.Future[None]] = []
        self.deadline: asyncio.TimerHandle | None = None

    def acked(self, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            self.settle(Unavailable("kafka send cancelled"))
        else:
            self.settle(done.exception())

    def settle(self, error: BaseException | None) -> None:
        """Answer every request of the group (those that gave up already are skipped)."""
        if self.deadline is not None:
            self.deadline.cancel()
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        self.waiters = []


class KafkaPublisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._closing = False
        self._open: dict[tuple[str, int], _Group] = {}  # collecting, not yet handed to the producer
        self._sealed: list[_Group] = []  # full, waiting for the flush, oldest first
        self._flush_task: asyncio.Task[None] | None = None
        self._known_topics: set[str] = set()
        self._linger_s = settings.kafka_linger_ms / 1000

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect in the background: ingest serves (503s) while the broker is still coming up."""
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def _connect_forever(self) -> None:
        backoff = 0.2
        while not self._closing:
            producer = self._new_producer()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka not reachable, retrying", extra={"error": repr(exc), "retry_s": backoff})
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._producer = producer
            log.info("kafka producer connected", extra={"bootstrap": self._settings.kafka_bootstrap_servers})
            return

    def _new_producer(self) -> AIOKafkaProducer:
        s = self._settings
        return AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id="postbacks-ingest",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # the linger is ours (the groups below): batches come to it complete
            compression_type=s.kafka_compression,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(int(s.publish_timeout_s * 1000), 1000),
            retry_backoff_ms=100,
            partitioner=KeyPartitioner(),  # murmur2 as aiokafka's, under half its cost (postbacks/murmur2.py)
        )

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> float:
        """Add one record to its partition's group, wait for the group's ack; returns the wait in seconds."""
        producer = self._producer
        if producer is None:
            raise Unavailable("kafka producer not connected")
        if self._in_flight >= self._settings.max_in_flight:
            raise Unavailable("too many requests waiting for kafka")
        self._in_flight += 1
        started = time.perf_counter()
        try:
            if topic not in self._known_topics:  # the partitions must be known to pick one
                async with asyncio.timeout(self._settings.publish_timeout_s):
                    await producer.partitions_for(topic)
                self._known_topics.add(topic)
            waiter = self._add(producer, topic, key, value, headers)
            await waiter
        except TimeoutError as exc:
            raise Unavailable(f"no acknowledgement within {self._settings.publish_timeout_s}s") from exc
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                self._reconnect(exc)
            raise Unavailable(f"kafka error: {exc!r}") from exc
        finally:
            self._in_flight -= 1
        return time.perf_counter() - started

    def _add(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
    ) -> asyncio.Future[None]:
        partition: int = producer._partition(topic, None, None, None, key, value)  # send()'s own choice
        group = self._open.get((topic, partition))
        if group is None or group.batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            if group is not None:  # full: it goes as it is, the record starts the next one
                self._seal(group)
            group = self._new_group(producer, topic, partition)
            if group.batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise Unavailable("record larger than a batch")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.waiters.append(waiter)
        return waiter

    def _new_group(self, producer: AIOKafkaProducer, topic: str, partition: int) -> _Group:
        loop = asyncio.get_running_loop()
        group = _Group(topic, partition, producer.create_batch())
        group.deadline = loop.call_later(
            self._settings.publish_timeout_s,
            group.settle,
            TimeoutError(f"no acknowledgement within {self._settings.publish_timeout_s}s"),
        )
        self._open[(topic, partition)] = group
        if self._flush_task is None:
            self._flush_task = loop.create_task(self._flush_after_linger())
        return group

    def _seal(self, group: _Group) -> None:
        """A full group leaves the open set; the running or next flush sends it, in order."""
        del self._open[(group.topic, group.partition)]
        self._sealed.append(group)

    async def _flush_after_linger(self) -> None:
        """Hand every group to the producer until none is left: a partition's in order, partitions
        side by side (aiokafka takes a partition's next batch once the previous one is on its way,
        and that must not hold up the others). Records arriving meanwhile form the next groups."""
        try:
            await asyncio.sleep(self._linger_s)
            while self._open or self._sealed:
                by_partition: dict[tuple[str, int], list[_Group]] = {}
                for group in [*self._sealed, *self._open.values()]:
                    by_partition.setdefault((group.topic, group.partition), []).append(group)
                self._sealed, self._open = [], {}
                await asyncio.gather(*(self._send(groups) for groups in by_partition.values()))
        finally:
            self._flush_task = None

    async def _send(self, groups: list[_Group]) -> None:
        for group in groups:
            producer = self._producer
            if producer is None:
                group.settle(Unavailable("kafka producer not connected"))
                continue
            try:
                acked = await producer.send_batch(group.batch, group.topic, partition=group.partition)
            except KafkaError as exc:
                group.settle(exc)
                continue
            except Exception as exc:  # every request of the group gets its 503, never a 500
                group.settle(Unavailable(f"kafka error: {exc!r}"))
                continue
            acked.add_done_callback(group.acked)

    def _reconnect(self, exc: Exception) -> None:
        """A fatal producer error (fenced, unknown producer id after a broker loss) needs a new producer."""
        if self._producer is None or self._closing:
            return
        log.error("kafka producer failed, reconnecting", extra={"error": repr(exc)})
        old, self._producer = self._producer, None
        asyncio.get_running_loop().create_task(old.stop())
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-reconnect")

    async def stop(self) -> None:
        """Send what is collected and flush it (requests still waiting get their answer), then close."""
        self._closing = True
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._flush_task is not None:
            with contextlib.suppress(Exception):
                await self._flush_task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
