"""Light fetched records (postbacks/fetched.py) against the real broker: the same records as aiokafka's own.

The sink reads committed records only, from topics written by transactional producers (the
stream) and plain ones (the ingest). The light records must carry the same offsets, timestamps,
values and headers as aiokafka's `ConsumerRecord`s for the same fetches, skip the same aborted
records and transaction markers, and leave the consumer's positions where aiokafka's would.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from postbacks.fetched import FetchedRecord, light_records
from tests.helpers import create_topic

pytestmark = pytest.mark.integration


async def _write(bootstrap: str, topic: str) -> set[bytes]:
    """Plain and transactional records on two partitions, one transaction aborted; the committed values."""
    await create_topic(bootstrap, topic, 2)
    committed: set[bytes] = set()
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await plain.start()
    try:
        for i in range(300):
            value = f"plain-{i}".encode()
            headers = [("schema", b"conversion"), ("v", str(i % 3).encode())]
            await plain.send(topic, value, key=str(i).encode(), partition=i % 2, headers=headers)
            committed.add(value)
        await plain.flush()
    finally:
        await plain.stop()
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"fetched-{uuid.uuid4().hex}")
    await txn.start()
    try:
        for round_ in range(4):
            aborted = round_ == 2
            async with txn.transaction() if not aborted else _aborting(txn):
                for i in range(50):
                    value = f"txn-{round_}-{i}".encode()
                    await txn.send(topic, value, partition=i % 2, headers=[("schema", b"mark")])
                    if not aborted:
                        committed.add(value)
    finally:
        await txn.stop()
    return committed


class _aborting:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> None:
        await self.producer.begin_transaction()

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.abort_transaction()


async def _read(
    bootstrap: str, topic: str, light: bool, max_records: int
) -> tuple[list[Any], dict[int, int]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (0, 1)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        if light:
            assert light_records(consumer)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            fetched = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            for tp in sorted(fetched):
                records += [(tp.partition, message) for message in fetched[tp]]
        return records, {tp.partition: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


def _fields(message: Any) -> tuple[int, int, bytes | None, tuple[tuple[str, bytes], ...]]:
    return message.offset, message.timestamp, message.value, tuple(message.headers)


@pytest.mark.parametrize("max_records", [7, 10_000])
def test_light_records_are_aiokafkas_records_four_fields(kafka_bootstrap: str, max_records: int) -> None:
    topic = f"fetched-{uuid.uuid4().hex[:10]}"
    committed = asyncio.run(_write(kafka_bootstrap, topic))
    theirs, their_positions = asyncio.run(_read(kafka_bootstrap, topic, light=False, max_records=max_records))
    ours, our_positions = asyncio.run(_read(kafka_bootstrap, topic, light=True, max_records=max_records))

    assert all(isinstance(message, ConsumerRecord) for _, message in theirs)
    assert ours and all(type(message) is FetchedRecord for _, message in ours)
    for partition in (0, 1):  # each partition in order (how fetches interleave partitions may differ)
        assert [_fields(m) for p, m in ours if p == partition] == [
            _fields(m) for p, m in theirs if p == partition
        ]
    assert {m.value for _, m in ours} == committed  # the aborted transaction and the markers skipped
    assert our_positions == their_positions
