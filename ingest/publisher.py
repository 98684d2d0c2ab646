"""Publishing to Kafka with the guarantee ingest sells: 2xx only after the broker's ack.

`acks=all` plus an idempotent producer, and every request awaits its own record's
acknowledgement. When the broker is slow or away, a request waits at most
`publish_timeout_s` and then gets `Unavailable` (the HTTP layer answers 503 +
Retry-After, and senders retry). In-flight requests are capped so memory stays
bounded instead of queueing without limit. A record whose wait timed out may still
reach Kafka; the sender's retry then makes a duplicate, which the stream's
deduplication absorbs: at-least-once into Kafka, exactly-once after dedup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from postbacks.settings import Settings

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The broker did not acknowledge in time, or too many requests are already waiting."""


class KafkaPublisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._closing = False

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
            linger_ms=s.kafka_linger_ms,
            compression_type=s.kafka_compression,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(int(s.publish_timeout_s * 1000), 1000),
            retry_backoff_ms=100,
        )

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> float:
        """Send one record and wait for its acknowledgement; returns the wait in seconds."""
        producer = self._producer
        if producer is None:
            raise Unavailable("kafka producer not connected")
        if self._in_flight >= self._settings.max_in_flight:
            raise Unavailable("too many requests waiting for kafka")
        self._in_flight += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                future = await producer.send(topic, value=value, key=key, headers=list(headers))
                await future
        except TimeoutError as exc:
            raise Unavailable(f"no acknowledgement within {self._settings.publish_timeout_s}s") from exc
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                self._reconnect(exc)
            raise Unavailable(f"kafka error: {exc!r}") from exc
        finally:
            self._in_flight -= 1
        return time.perf_counter() - started

    def _reconnect(self, exc: Exception) -> None:
        """A fatal producer error (fenced, unknown producer id after a broker loss) needs a new producer."""
        if self._producer is None or self._closing:
            return
        log.error("kafka producer failed, reconnecting", extra={"error": repr(exc)})
        old, self._producer = self._producer, None
        asyncio.get_running_loop().create_task(old.stop())
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-reconnect")

    async def stop(self) -> None:
        """Flush what is buffered (requests still waiting get their answer), then close."""
        self._closing = True
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
