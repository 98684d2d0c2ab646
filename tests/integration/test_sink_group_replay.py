"""A flush planned as one group of partitions, interrupted after its insert, replays exactly.

Real broker and engine. The first attempt inserts every partition's batch in one insert with
the group's token and commits the plans, then "crashes" before its done commit. A restarted
writer re-forms each planned batch; each one's insert carries the whole group again (the other
partitions' planned ranges read straight from Kafka, as when another member owns them) with
the same token, so ClickHouse keeps the first and the aggregates count every click once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK
from sinks.tables import SPECS
from sinks.writer import Batch, TableWriter, group_token
from tests.helpers import produce
from tests.integration.test_sink_outage import committed
from tests.unit.sinks.test_writer_flush import CountingClickHouse

pytestmark = pytest.mark.integration

CLICKS = next(s for s in SPECS if s.name == "clicks")


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def commit_plans(settings: Settings, group: str, topic: str, plans: dict[int, str]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): meta for p, meta in plans.items()}
        consumer.assign(list(tps))
        await consumer.commit({tp: OffsetAndMetadata(0, meta) for tp, meta in tps.items()})
    finally:
        await consumer.stop()


async def test_a_group_interrupted_before_its_done_commit_is_stored_once(
    pipeline_settings: Settings, clickhouse_db: Any
) -> None:
    settings = pipeline_settings.with_overrides(sink_max_age_ms=100)
    topic = Topics(settings.topic_prefix).clicks_raw
    now = int(time.time() * 1000)
    records = [
        {"click_id": f"k{i}", "clicked_at": now, "offer_id": "o1", "publisher_id": "p1", "ip": "1.1.1.1"}
        for i in range(40)
    ]
    await asyncio.to_thread(produce, settings, topic, CLICK, records, "click_id")
    ends = await end_offsets(settings, topic)
    spans = tuple((p, 0, end - 1) for p, end in sorted(ends.items()) if end > 0)
    assert len(spans) >= 2  # the keys spread over several partitions

    clickhouse = CountingClickHouse(clickhouse_db)
    first = TableWriter(CLICKS, settings, clickhouse)  # type: ignore[arg-type]
    # The first attempt: every batch read, one insert with the group's token, the plans committed.
    batches = await first._rest_of_group([Batch(-1, planned=(0, 0), group=spans)])
    for batch in batches:
        batch.group = spans
    await first._insert_group(batches)
    await commit_plans(settings, first.group, topic, {b.partition: b.plan for b in batches})
    assert clickhouse_db.query("SELECT count() FROM clicks").result_rows == [(40,)]

    again = TableWriter(CLICKS, settings, clickhouse)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    try:
        deadline = time.monotonic() + 60
        while (await committed(settings, again.group)) != {p: (end, "") for p, end in ends.items() if end}:
            assert time.monotonic() < deadline, await committed(settings, again.group)
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
    token = group_token("clicks", spans)
    assert clickhouse.tokens == [token] * (1 + len(spans))  # each re-formed batch repeated the group's insert
    assert clickhouse_db.query("SELECT count(), uniqExact(click_id) FROM clicks").result_rows == [(40, 40)]
    assert clickhouse_db.query("SELECT sum(clicks) FROM clicks_hourly").result_rows == [(40,)]
    stored = clickhouse_db.query(
        "SELECT kafka_partition, max(kafka_offset) FROM clicks GROUP BY 1"
    ).result_rows
    assert {(p, last) for p, _, last in spans} == {tuple(r) for r in stored}
