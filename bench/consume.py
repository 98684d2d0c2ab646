"""Bare consumers of a preloaded topic: records/s that reach Python, doing nothing with them.

The sink stage's second and third baselines: how fast a client hands a topic's records to
Python at all, aiokafka (what the sink uses) and confluent-kafka (librdkafka, C), the same
topic in the same run. What the sink does per record has to fit in the difference.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench.measure import Sample, steady_windows
from bench.plan import Plan


def rates(samples: list[Sample], total: int, plan: Plan) -> tuple[float, ...]:
    """The steady windows' rates; if the topic ran out before any window (a --quick run), the whole read's."""
    windows = steady_windows(samples, total, plan.warmup_s, plan.window_s, plan.windows)
    if windows.rates:
        return windows.rates
    # From the sample before the first records (the join is not reading) to the last one; if
    # records were there at the first sample already, from that sample on.
    first = next((i for i, (_, n) in enumerate(samples) if n > 0), None)
    if first is None:
        return ()
    (start, before), (end, read) = samples[max(first - 1, 0)], samples[-1]
    if first == 0:
        before = samples[0][1]
    return ((read - before) / (end - start),) if end > start and read > before else ()


def aiokafka_rate(bootstrap: str, topic: str, total: int, seconds: float) -> list[Sample]:
    """Cumulative records read with getmany, sampled after each fetch, for `seconds` or `total` records."""
    from aiokafka import AIOKafkaConsumer

    async def consume() -> list[Sample]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            samples: list[Sample] = [(time.monotonic(), 0)]
            total_read = 0
            while samples[-1][0] < samples[0][0] + seconds and total_read < total:
                fetched = await consumer.getmany(timeout_ms=500, max_records=50_000)
                total_read += sum(len(messages) for messages in fetched.values())
                samples.append((time.monotonic(), total_read))
            return samples
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def confluent_rate(bootstrap: str, topic: str, total: int, seconds: float) -> list[Sample]:
    """The same with confluent-kafka's consume(num_messages), each record's value touched once."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-bare-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    try:
        samples: list[Sample] = [(time.monotonic(), 0)]
        total_read = 0
        while samples[-1][0] < samples[0][0] + seconds and total_read < total:
            for message in consumer.consume(num_messages=50_000, timeout=0.5):
                if message.error() is None and message.value() is not None:
                    total_read += 1
            samples.append((time.monotonic(), total_read))
        return samples
    finally:
        consumer.close()
