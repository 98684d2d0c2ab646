"""A flush of many partitions on the real engine: one plan commit, one identity query, one insert, one done.

The identity filter is asked once for the whole flush; each batch is still filtered as if it
had asked after the inserts before it, so a record re-emitted into another partition of the
same flush is stored once, and one stored at an earlier offset is not stored again. Every plan
names the whole group, whose token the one insert carries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from aiokafka import TopicPartition

from postbacks.settings import Settings
from schemas import CONVERSION, Codec
from sinks.clickhouse import ClickHouse, insert_avro, insert_values
from sinks.tables import SPECS
from sinks.writer import TableWriter
from tests.unit.sinks.test_clickhouse_schema import conversion, insert
from tests.unit.sinks.test_writer_rebalance import FakeConsumer

CONVERSIONS = next(s for s in SPECS if s.name == "conversion_versions")
CODEC = Codec(CONVERSION)


@dataclass
class CountingClickHouse:
    """The fixture's client behind the writer's async interface, counting the calls."""

    client: Any
    queries: int = 0
    tokens: list[str] = field(default_factory=list)

    async def insert(self, table: str, values: Sequence[Sequence[Any]], columns: Any, token: str) -> None:
        self.tokens.append(token)
        insert_values(self.client, table, values, columns, token)

    async def insert_avro(self, table: str, container: bytes, columns: Any, token: str) -> None:
        self.tokens.append(token)
        insert_avro(self.client, table, container, columns, token)

    async def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        self.queries += 1
        return [tuple(r) for r in self.client.query(sql, parameters=parameters).result_rows]


def message(offset: int, conversion_id: str) -> SimpleNamespace:
    record = {**conversion(1, "approved", "1.5"), "conversion_id": conversion_id}
    return SimpleNamespace(
        offset=offset, value=CODEC.encode(record), headers=CODEC.headers, timestamp=time.time() * 1000
    )


async def test_one_flush_of_three_partitions_is_one_insert_filtered_as_one_after_another(
    clickhouse_db: Any,
) -> None:
    insert(
        clickhouse_db, "conversion_versions", [{**conversion(1, "approved", "1"), "conversion_id": "old"}], 5
    )
    clickhouse = CountingClickHouse(clickhouse_db)
    writer = TableWriter(CONVERSIONS, Settings(), cast(ClickHouse, clickhouse))
    consumer = FakeConsumer(writer.topic)
    commits: list[dict[int, str]] = []
    record_commit = consumer.commit

    async def commit(offsets: dict[TopicPartition, Any]) -> None:
        commits.append({tp.partition: meta.metadata for tp, meta in offsets.items()})
        await record_commit(offsets)

    consumer.commit = commit  # type: ignore[method-assign]
    writer.consumer = cast(Any, consumer)
    for partition in range(3):
        writer._sought(TopicPartition(writer.topic, partition), 0)
    await writer._take(0, [message(0, "a"), message(1, "b")], writer.ready[0])
    await writer._take(1, [message(0, "a")], writer.ready[1])  # "a" re-emitted into another partition
    await writer._take(2, [message(0, "old"), message(1, "c")], writer.ready[2])  # "old": stored at 0/5

    await writer.flush_all()

    stored = clickhouse_db.query(
        "SELECT conversion_id, kafka_partition, kafka_offset FROM conversion_versions ORDER BY conversion_id"
    ).result_rows
    assert [tuple(r) for r in stored] == [("a", 0, 0), ("b", 0, 1), ("c", 2, 1), ("old", 0, 5)]
    assert clickhouse.queries == 1
    assert clickhouse.tokens == ["conversion_versions:0:0-1,1:0-0,2:0-1"]
    group = ";with:0:0-1,1:0-0,2:0-1"
    assert commits == [
        {0: "batch:0-1" + group, 1: "batch:0-0" + group, 2: "batch:0-1" + group},
        {0: "", 1: "", 2: ""},
    ]
