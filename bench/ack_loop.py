"""The broker-ack ceiling at the ingest's concurrency: N waiters, each sending one record and waiting
for its ack before the next, as N keep-alive connections do through the ingest.

Three ways, same payloads, same topic, one after the other in the ingest stage's run:
  aiokafka      `send()` + await its future (what the ingest did before grouping its records);
  grouped       the ingest's own publisher (ingest/publisher.py: one batch and one ack per partition);
  confluent     confluent-kafka (librdkafka, C) with acks=all and idempotence, its delivery callback
                resolving an asyncio future from librdkafka's poll thread.
Each reports acked records/s and the process's CPU per record: what the producer costs, apart
from HTTP, so the ingest's choice of client rests on a measurement.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.measure import Sample, steady_windows
from bench.plan import Plan
from ingest.publisher import KafkaPublisher
from postbacks.settings import Settings

Payload = tuple[bytes, bytes]
Headers = list[tuple[str, bytes]]
Publish = Callable[[bytes, bytes], Awaitable[Any]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _closed_loop(publish: Publish, payloads: list[Payload], plan: Plan) -> tuple[list[float], float]:
    """(rates of the steady windows, CPU µs per acked record over the whole run).

    The windows count from the first ack (librdkafka connects and gets its producer id lazily).
    """
    acked = 0
    started = time.monotonic()
    samples: list[Sample] = [(started, 0)]
    end = started + 60.0  # until the first ack; then the warm-up and the windows from there
    span = plan.warmup_s + plan.window_s * plan.windows + 0.2

    async def waiter(offset: int) -> None:
        nonlocal acked
        i = offset
        while time.monotonic() < end:
            key, value = payloads[i % len(payloads)]
            await publish(key, value)
            acked += 1
            i += plan.connections

    async def sampler() -> None:
        nonlocal end
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if acked and not samples[-1][1]:
                end = now + span
            samples.append((now, acked))

    cpu = _cpu()
    await asyncio.gather(sampler(), *(waiter(n) for n in range(plan.connections)))
    cpu_us = (_cpu() - cpu) / max(acked, 1) * 1e6
    rates = steady_windows(samples, 1 << 62, plan.warmup_s, plan.window_s, plan.windows).rates
    return list(rates), cpu_us


async def aiokafka_loop(
    settings: Settings, topic: str, headers: Headers, payloads: list[Payload], plan: Plan
) -> tuple[list[float], float]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
    )
    await producer.start()
    try:

        async def publish(key: bytes, value: bytes) -> Any:
            return await (await producer.send(topic, value=value, key=key, headers=headers))

        return await _closed_loop(publish, payloads, plan)
    finally:
        await producer.stop()


async def grouped_loop(
    settings: Settings, topic: str, headers: Headers, payloads: list[Payload], plan: Plan
) -> tuple[list[float], float]:
    publisher = KafkaPublisher(settings)
    await publisher.start()
    try:
        for _ in range(1200):  # connects in the background, as in the ingest
            if publisher.ready:
                break
            await asyncio.sleep(0.05)

        async def publish(key: bytes, value: bytes) -> Any:
            return await publisher.publish(topic, key, value, headers)

        return await _closed_loop(publish, payloads, plan)
    finally:
        await publisher.stop()


async def confluent_loop(
    settings: Settings, topic: str, headers: Headers, payloads: list[Payload], plan: Plan
) -> tuple[list[float], float]:
    from confluent_kafka import KafkaException, Producer

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": settings.kafka_linger_ms,
        }
    )
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def poll() -> None:  # delivery callbacks run in the thread that polls
        while not stop.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=poll, name="confluent-poll", daemon=True)
    poller.start()

    def delivered(future: asyncio.Future[None]) -> Callable[[Any, Any], None]:
        def callback(error: Any, message: Any) -> None:
            if error is None:
                loop.call_soon_threadsafe(future.set_result, None)
            else:
                loop.call_soon_threadsafe(future.set_exception, KafkaException(error))

        return callback

    pairs: list[tuple[str, str | bytes | None]] = list(headers)

    async def publish(key: bytes, value: bytes) -> Any:
        future: asyncio.Future[None] = loop.create_future()
        producer.produce(topic, value=value, key=key, headers=pairs, on_delivery=delivered(future))
        return await future

    try:
        return await _closed_loop(publish, payloads, plan)
    finally:
        stop.set()
        poller.join(5)
        producer.flush(10)
