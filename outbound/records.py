"""What the outbound worker writes to Kafka, and how it reads its own delivery states back.

Every write waits for the broker's acknowledgement (acks=all, idempotent producer)
and is retried until it gets one: the worker never moves on from a step it has not
recorded. Three topics, all keyed by idempotency key:

- `outbound.deliveries` (compacted, in the conversion's partition): the latest state of
  each delivery (outbound.state); reloaded when the worker gets a partition.
- `outbound.attempts`: one record per request (and per give-up); the sink writes them to
  ClickHouse `outbound_postbacks`, deduplicated by (idempotency_key, attempt).
- `outbound.deadletter`: deliveries given up on, with their rendered request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from outbound.job import Job
from outbound.plan import redact
from outbound.state import DeliveryState
from postbacks.topics import Topics
from schemas import OUTBOUND_ATTEMPT, OUTBOUND_DEAD_LETTER, OUTBOUND_DELIVERY, Codec, SchemaError

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class Recorder:
    """Writes delivery states, attempts and dead letters; keeps the states it wrote in memory."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics) -> None:
        self.producer = producer
        self.topics = topics
        # Partition of conversions.attributed -> idempotency key -> latest recorded state.
        self.states: dict[int, dict[str, DeliveryState]] = {}
        self._codecs = {
            name: Codec(name) for name in (OUTBOUND_DELIVERY, OUTBOUND_ATTEMPT, OUTBOUND_DEAD_LETTER)
        }

    async def state(
        self,
        job: Job,
        state: str,
        attempt: int,
        next_at: float | None = None,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        now = time.time()
        record = {
            "idempotency_key": job.key,
            "conversion_id": job.conversion_id,
            "version": job.version,
            "publisher_id": job.publisher_id,
            "state": state,
            "attempt": attempt,
            "next_attempt_at": None if next_at is None else int(next_at * 1000),
            "updated_at": int(now * 1000),
            "source_offset": job.source_offset,
            "http_status": http_status,
            "error": error,
        }
        await self._send(self.topics.outbound_deliveries, OUTBOUND_DELIVERY, job.key, record, job.partition)
        self.states.setdefault(job.partition, {})[job.key] = DeliveryState(
            state, attempt, now, next_at, http_status
        )

    async def attempt(
        self,
        job: Job,
        attempt: int,
        at: float,
        outcome: str,
        reason: str | None = None,
        http_status: int | None = None,
        latency_ms: int | None = None,
        error: str | None = None,
    ) -> None:
        record = {
            "idempotency_key": job.key,
            "attempt": attempt,
            "attempted_at": int(at * 1000),
            "conversion_id": job.conversion_id,
            "version": job.version,
            "publisher_id": job.publisher_id,
            "offer_id": job.offer_id,
            "campaign_id": job.campaign_id,
            "click_id": job.click_id,
            "event_name": job.event_name,
            "status": job.status,
            "method": job.request.method,
            "url": redact(job.request.url),
            "http_status": http_status,
            "latency_ms": latency_ms,
            "error": error,
            "outcome": outcome,
            "reason": reason,
        }
        await self._send(self.topics.outbound_attempts, OUTBOUND_ATTEMPT, job.key, record)

    async def dead_letter(self, job: Job, reason: str, error: str | None) -> None:
        record = {
            "idempotency_key": job.key,
            "conversion_id": job.conversion_id,
            "version": job.version,
            "publisher_id": job.publisher_id,
            "offer_id": job.offer_id,
            "event_name": job.event_name,
            "status": job.status,
            "reason": reason,
            "error": error,
            "attempts": job.attempts,
            "last_http_status": job.last_status,
            "method": job.request.method,
            "url": job.request.url,
            "body": job.request.body,
            "source_partition": job.partition,
            "source_offset": job.source_offset,
            "dead_at": int(time.time() * 1000),
        }
        await self._send(self.topics.outbound_dead_letter, OUTBOUND_DEAD_LETTER, job.key, record)

    async def _send(
        self, topic: str, schema: str, key: str, record: Mapping[str, Any], partition: int | None = None
    ) -> None:
        """Until acknowledged. A retry after an unclear failure may store the record twice: every
        reader of these topics tolerates that (latest state wins; attempts and dead letters carry keys)."""
        codec = self._codecs[schema]
        value = codec.encode(record)
        backoff = 0.2
        while True:
            try:
                await self.producer.send_and_wait(
                    topic, value, key=key.encode(), partition=partition, headers=codec.headers
                )
                return
            except KafkaError as exc:
                log.warning(
                    "outbound record not acknowledged, retrying",
                    extra={"topic": topic, "error": repr(exc)[:300], "retry_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)


async def load_states(
    bootstrap: str, topic: str, partitions: list[int]
) -> dict[int, dict[str, DeliveryState]]:
    """The latest recorded state of every delivery in these partitions of `outbound.deliveries`.

    Reads each partition from its beginning to the end offset it had when the load
    started: everything a previous owner recorded (its writes were acknowledged
    before it went on, so none is missing). Progress is tracked by the offsets actually
    received, never by the consumer's position alone: a position reset racing the seek
    to the beginning was seen to move the position to the end without delivering the
    records in between, which here would mean firing deliveries twice.
    """
    codec = Codec(OUTBOUND_DELIVERY, millis=True)
    states: dict[int, dict[str, DeliveryState]] = {p: {} for p in partitions}
    if not partitions:
        return states
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",  # never "latest": nothing may be skipped
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        received = dict(begin)  # per partition: everything below this offset was applied
        for tp in tps:
            consumer.seek(tp, begin[tp])
        remaining = {tp for tp in tps if begin[tp] < end[tp]}
        quiet = 0
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batch.items():
                for message in messages:
                    _apply(states[tp.partition], codec, tp.partition, message)
                if messages:
                    received[tp] = messages[-1].offset + 1
            remaining = {tp for tp in remaining if received[tp] < end[tp]}
            quiet = 0 if batch else quiet + 1
            if remaining and not batch:
                # Nothing came. A position beyond what was received is sought back; a position at the
                # end with nothing more to receive, several times over, is a gap (compaction) at the end.
                for tp in list(remaining):
                    if await consumer.position(tp) > received[tp]:
                        consumer.seek(tp, received[tp])
                    elif quiet >= 20:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return states


def _apply(states: dict[str, DeliveryState], codec: Codec, partition: int, message: Any) -> None:
    key = message.key.decode() if message.key else ""
    if message.value is None:  # a tombstone
        states.pop(key, None)
        return
    try:
        record = codec.decode(message.value, message.headers)
    except SchemaError as exc:
        log.error(
            "undecodable delivery state skipped",
            extra={"partition": partition, "offset": message.offset, "error": str(exc)},
        )
        return
    states[record["idempotency_key"]] = DeliveryState.from_record(record)
