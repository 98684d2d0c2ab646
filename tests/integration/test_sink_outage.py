"""ClickHouse unavailable: the writer keeps offsets uncommitted, backs off, retries, loses nothing.

Real broker, real engine (the session's embedded ClickHouse, a fresh database) and the real
TableWriter; only the availability of ClickHouse is simulated, by failing inserts for a while.
(A ClickHouse *server* stopped and restarted is the same path through the driver's errors.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK
from sinks.clickhouse import insert_avro, insert_values
from sinks.tables import SPECS
from sinks.writer import TableWriter
from tests.helpers import produce

pytestmark = pytest.mark.integration

CLICKS = next(s for s in SPECS if s.name == "clicks")


class UnavailableClickHouse:
    """The engine behind a facade that refuses inserts until `available` is set."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.available = False
        self.refused = 0
        self.kept_retrying = asyncio.Event()  # set after a few refused attempts

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def _refuse_while_down(self) -> None:
        if not self.available:
            self.refused += 1
            if self.refused >= 4:
                self.kept_retrying.set()
            raise ConnectionError("ClickHouse is down")

    async def insert(self, table: str, values: Any, columns: Any, token: str) -> None:
        self._refuse_while_down()
        insert_values(self.client, table, values, columns, token)

    async def insert_avro(self, table: str, container: bytes, columns: Any, token: str) -> None:
        self._refuse_while_down()
        insert_avro(self.client, table, container, columns, token)

    async def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql, parameters=parameters).result_rows]


async def committed(settings: Settings, group: str) -> dict[int, tuple[int, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: (meta.offset, meta.metadata) for tp, meta in offsets.items()}


async def test_outage_then_recovery_is_exact(pipeline_settings: Settings, clickhouse_db: Any) -> None:
    settings = pipeline_settings.with_overrides(sink_max_age_ms=200)
    records = [
        {
            "click_id": f"k{i}",
            "clicked_at": int(time.time() * 1000),
            "offer_id": "o1",
            "publisher_id": "p1",
            "ip": "1.1.1.1",
            "extra": {},
        }
        for i in range(60)
    ]
    await asyncio.to_thread(
        produce, settings, Topics(settings.topic_prefix).clicks_raw, CLICK, records, "click_id"
    )
    clickhouse = UnavailableClickHouse(clickhouse_db)
    writer = TableWriter(CLICKS, settings, clickhouse)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        deadline = time.monotonic() + 30
        await asyncio.wait_for(clickhouse.kept_retrying.wait(), 30)  # it kept retrying
        # Meanwhile nothing was committed past a batch's start, only its plan.
        during = await committed(settings, writer.group)
        assert all(offset <= 0 or metadata.startswith("batch:") for offset, metadata in during.values()), (
            during
        )
        assert clickhouse_db.query("SELECT count() FROM clicks").result_rows == [(0,)]
        assert len(writer.batches) <= settings.topic_partitions  # one batch in hand per partition at most

        clickhouse.available = True
        while clickhouse_db.query("SELECT count() FROM clicks").result_rows[0][0] < 60:
            assert time.monotonic() < deadline + 30
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything extra would show now
    finally:
        stop.set()
        await task
    stored = clickhouse_db.query("SELECT click_id FROM clicks ORDER BY click_id").result_rows
    assert sorted(r[0] for r in stored) == sorted(r["click_id"] for r in records)
    assert clickhouse_db.query("SELECT sum(clicks) FROM clicks_hourly").result_rows == [(60,)]
    after = await committed(settings, writer.group)
    assert sum(offset for offset, _ in after.values()) == 60 and all(m == "" for _, m in after.values())
