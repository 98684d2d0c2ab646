"""The stream's fetch max wait (stream/source_batches.py) against the real broker.

aiokafka keeps one fetch in flight per broker and refetches a partition only once its
records are all taken. A consumer working slowly through a busy partition therefore sends
its next fetch for the idle partitions alone, and the broker holds that fetch for the
max wait; when the busy partition runs dry, its next records wait for that fetch. This
reads the same busy partition with Faust's 1.5 s wait and with the worker's 100 ms, and
checks that the shorter wait is what the busy partition's reader waits for, and that the
consumer still reads every record once.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.source_batches import set_fetch_max_wait
from tests.helpers import create_topic

pytestmark = pytest.mark.integration

BATCHES, PER_BATCH = 4, 10


async def _write(bootstrap: str, topic: str) -> None:
    """Partition 0: four record batches of ten; partition 1 stays empty."""
    await create_topic(bootstrap, topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for b in range(BATCHES):
            batch = producer.create_batch()
            for i in range(PER_BATCH):
                assert batch.append(key=None, value=f"{b}-{i}".encode() * 10, timestamp=None) is not None
            batch.close()
            await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()


async def _read_slowly(bootstrap: str, topic: str, wait_ms: int) -> tuple[list[bytes], float]:
    """Every record of partition 0, five at a time with 150 ms of 'work' after each take."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=256,  # one record batch a fetch: each batch needs a fetch of its own
        fetch_max_wait_ms=1500,  # Faust's
    )
    set_fetch_max_wait(consumer, wait_ms)
    await consumer.start()
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.seek_to_beginning()
        started = time.monotonic()
        while len(values) < BATCHES * PER_BATCH:
            fetched = await consumer.getmany(timeout_ms=10_000, max_records=5)
            assert fetched, "no records within 10 s"
            values += [record.value for records in fetched.values() for record in records]
            await asyncio.sleep(0.15)  # longer than aiokafka's prefetch backoff (100 ms)
        return values, time.monotonic() - started
    finally:
        await consumer.stop()


def test_a_short_fetch_wait_keeps_a_busy_partition_from_waiting_on_idle_ones(kafka_bootstrap: str) -> None:
    topic = f"fetchwait-{uuid.uuid4().hex[:8]}"
    asyncio.run(_write(kafka_bootstrap, topic))
    slow_values, slow_s = asyncio.run(_read_slowly(kafka_bootstrap, topic, 1500))
    fast_values, fast_s = asyncio.run(_read_slowly(kafka_bootstrap, topic, 100))
    expected = [f"{b}-{i}".encode() * 10 for b in range(BATCHES) for i in range(PER_BATCH)]
    assert slow_values == expected
    assert fast_values == expected
    # Eight takes with 150 ms after each: ~1.2 s of the reader's own time either way. With
    # Faust's wait each of the three later batches also waits out most of an idle long poll.
    assert fast_s < slow_s - 1.5, (fast_s, slow_s)


def test_the_wait_is_the_one_the_started_fetcher_requests_with(kafka_bootstrap: str) -> None:
    topic = f"fetchwait-{uuid.uuid4().hex[:8]}"

    async def started_wait() -> int:
        await create_topic(kafka_bootstrap, topic, 1)
        consumer = set_fetch_max_wait(
            AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, fetch_max_wait_ms=1500), 100
        )
        await consumer.start()  # the fetcher, built at start, puts this in every fetch request
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.getmany(timeout_ms=200)  # one fetch round: the fetcher is running
            wait: int = consumer._fetcher._fetch_max_wait_ms
            return wait
        finally:
            await consumer.stop()

    assert asyncio.run(started_wait()) == 100

    class Elsewhere:
        pass

    with pytest.raises(RuntimeError, match="pinned"):
        set_fetch_max_wait(Elsewhere(), 100)  # type: ignore[arg-type]
