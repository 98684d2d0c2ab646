"""The sink writer across rebalances and refused commits: every offset is stored once.

A fake consumer and ClickHouse stand in for the real ones (the integration suite runs
the real ones); what is checked is the writer's own bookkeeping: which fetched records
it takes after the partition has been sought back, and what it does when the group
refuses a commit.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import fastavro
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from postbacks.settings import Settings
from schemas import CLICK, STREAM_TICK, Codec
from sinks.clickhouse import ClickHouse
from sinks.tables import SPECS
from sinks.writer import Batch, TableWriter, _Listener

CLICKS = next(s for s in SPECS if s.name == "clicks")


@dataclass
class FakeConsumer:
    topic: str
    refuse_commits: int = 0
    seeks: list[tuple[int, int]] = field(default_factory=list)
    commits: list[tuple[int, int, str]] = field(default_factory=list)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in range(3)}

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise CommitFailedError("the group rebalanced")
        for tp, meta in offsets.items():
            self.commits.append((tp.partition, meta.offset, meta.metadata))


@dataclass
class FakeClickHouse:
    inserts: list[tuple[str, list[int]]] = field(default_factory=list)

    async def insert(self, table: str, values: Sequence[Sequence[Any]], columns: Any, token: str) -> None:
        self.inserts.append((token, list(values[-1])))  # column-oriented: the last column is the offset

    async def insert_avro(self, table: str, container: bytes, columns: Any, token: str) -> None:
        self.inserts.append((token, [row["kafka_offset"] for row in fastavro.reader(io.BytesIO(container))]))

    async def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        return []


def writer_with_fakes(refuse_commits: int = 0) -> tuple[TableWriter, FakeConsumer, FakeClickHouse]:
    clickhouse = FakeClickHouse()
    writer = TableWriter(CLICKS, Settings(), cast(ClickHouse, clickhouse))
    consumer = FakeConsumer(writer.topic, refuse_commits)
    writer.consumer = cast(Any, consumer)
    return writer, consumer, clickhouse


CODEC = Codec(CLICK)


def messages(*offsets: int) -> list[SimpleNamespace]:
    click = {"click_id": "", "clicked_at": 0, "offer_id": "o", "publisher_id": "p", "ip": "192.0.2.1"}
    return [
        SimpleNamespace(
            offset=o,
            value=CODEC.encode({**click, "click_id": f"c{o}"}),
            headers=CODEC.headers,
            timestamp=time.time() * 1000,
        )
        for o in offsets
    ]


def stored_offsets(clickhouse: FakeClickHouse) -> list[int]:
    return sorted(offset for _, offsets in clickhouse.inserts for offset in offsets)


async def test_records_fetched_before_a_seek_back_are_not_taken_again() -> None:
    writer, _, clickhouse = writer_with_fakes()
    tp = TopicPartition(writer.topic, 2)
    writer._sought(tp, 5)
    before = writer.ready[2]
    # A rebalance runs while the run loop still holds a fetch of 5..7 (it was flushing another
    # partition): on_assigned seeks the partition back to its committed offset, 5.
    writer._sought(tp, 5)
    await writer._take(2, messages(5, 6, 7), before)  # the stale fetch: dropped
    await writer._take(2, messages(5, 6, 7), writer.ready[2])  # the same records, fetched again
    await writer.flush_all()
    assert stored_offsets(clickhouse) == [5, 6, 7]
    assert clickhouse.inserts[0][0] == "clicks:2:5-7"


async def test_a_refused_plan_commit_rewinds_instead_of_dropping_the_batch() -> None:
    writer, consumer, clickhouse = writer_with_fakes(refuse_commits=1)
    tp = TopicPartition(writer.topic, 1)
    writer._sought(tp, 10)
    seek = writer.ready[1]
    await writer._take(1, messages(10, 11), seek)
    await writer.flush(1)  # the plan commit is refused: nothing inserted, partition sought back
    assert clickhouse.inserts == [] and consumer.seeks[-1] == (1, 10)
    await writer._take(1, messages(12), seek)  # the rest of the old fetch: not taken
    await writer._take(1, messages(10, 11, 12), writer.ready[1])
    await writer.flush(1)
    assert stored_offsets(clickhouse) == [10, 11, 12]
    assert consumer.commits == [(1, 10, "batch:10-12"), (1, 13, "")]


async def test_a_refused_done_commit_leaves_the_plan_for_the_next_owner() -> None:
    writer, consumer, clickhouse = writer_with_fakes()
    tp = TopicPartition(writer.topic, 0)
    writer._sought(tp, 0)
    await writer._take(0, messages(0, 1), writer.ready[0])
    original = consumer.commit

    async def refuse_done(offsets: dict[TopicPartition, Any]) -> None:
        if any(meta.metadata == "" for meta in offsets.values()):
            raise CommitFailedError("the group rebalanced")
        await original(offsets)

    consumer.commit = refuse_done  # type: ignore[method-assign]
    await writer.flush(0)
    # Inserted once; the committed plan still names this batch, so whoever owns partition 0
    # next re-forms it with the same token and ClickHouse drops the repeat.
    assert stored_offsets(clickhouse) == [0, 1]
    assert consumer.commits == [(0, 0, "batch:0-1")]


async def test_stopping_leaves_an_incomplete_re_formed_batch_planned() -> None:
    writer, consumer, clickhouse = writer_with_fakes()
    tp = TopicPartition(writer.topic, 4)
    writer._sought(tp, 10)
    writer.batches[4] = Batch(4, planned=(10, 12))
    await writer._take(4, messages(10, 11), writer.ready[4])  # 12 not fetched yet when the stop comes
    await writer.flush_all()
    assert clickhouse.inserts == [] and consumer.commits == []  # the plan stays for the next start


async def test_an_open_batch_takes_a_fetch_as_record_by_record_adds_would() -> None:
    """The fast path (`_add_all`) against `_add` per record: same rows, marks skipped, versions kept."""
    writer, _, _ = writer_with_fakes()
    tick = Codec(STREAM_TICK)
    fetched = messages(3, 4, 5, 6)
    for message in fetched:
        message.headers = tuple(message.headers)  # as aiokafka hands them over
    fetched[2].headers = tuple(tick.headers)  # the stream's clock mark: an offset, no row
    fetched[2].timestamp = 0.0
    fetched[3].headers = list(CODEC.headers)  # unhashable headers take the full path
    fetched[0].timestamp = 1_000.0  # the first record's Kafka time starts the batch's age
    writer._sought(TopicPartition(writer.topic, 0), 3)
    await writer._take(0, fetched, writer.ready[0])
    expected = Batch(0)
    for message in fetched:
        writer._add(expected, message)
    batch = writer.batches[0]
    assert batch.rows == expected.rows and [row[0] for row in batch.rows] == [3, 4, 6]
    assert {row[2] for row in batch.rows} == {CODEC.version} and batch.started == 1.0
    assert writer._in_clickhouse([batch])


async def test_a_group_with_a_record_of_an_older_version_is_decoded_in_python() -> None:
    conversions = next(s for s in SPECS if s.name == "conversion_versions")
    writer = TableWriter(conversions, Settings(), cast(ClickHouse, FakeClickHouse()))
    newest, older = Batch(0), Batch(1)
    newest.add(1, b"", writer.codec.version)
    older.add(1, b"", writer.codec.version)
    older.add(2, b"", writer.codec.version - 1)
    assert writer._in_clickhouse([newest]) and not writer._in_clickhouse([newest, older])


@dataclass
class GatedClickHouse(FakeClickHouse):
    """Inserts wait for `gate`: a flush stays in flight until the test lets it through."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def insert_avro(self, table: str, container: bytes, columns: Any, token: str) -> None:
        await self.gate.wait()
        await super().insert_avro(table, container, columns, token)


def gated_writer() -> tuple[TableWriter, FakeConsumer, GatedClickHouse]:
    clickhouse = GatedClickHouse()
    writer = TableWriter(CLICKS, Settings(), cast(ClickHouse, clickhouse))
    consumer = FakeConsumer(writer.topic)
    writer.consumer = cast(Any, consumer)
    writer._sought(TopicPartition(writer.topic, 0), 0)
    return writer, consumer, clickhouse


async def test_records_are_taken_while_an_insert_is_in_flight_and_planned_only_after_it_is_done() -> None:
    writer, consumer, clickhouse = gated_writer()
    await writer._take(0, messages(0, 1), writer.ready[0])
    await writer._start([0])  # planned, inserting
    await writer._take(0, messages(2, 3), writer.ready[0])  # the run loop goes on meanwhile
    assert [row[0] for row in writer.batches[0].rows] == [2, 3]
    following = asyncio.create_task(writer._start([0]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert consumer.commits == [(0, 0, "batch:0-1")]  # no plan before the batch before it is done
    clickhouse.gate.set()
    await following
    await writer._finish()
    assert consumer.commits == [(0, 0, "batch:0-1"), (0, 2, ""), (0, 2, "batch:2-3"), (0, 4, "")]
    assert stored_offsets(clickhouse) == [0, 1, 2, 3]


async def test_a_revoke_finishes_the_flush_in_flight_before_flushing_the_rest() -> None:
    writer, consumer, clickhouse = gated_writer()
    await writer._take(0, messages(0, 1), writer.ready[0])
    await writer._start([0])
    await writer._take(0, messages(2), writer.ready[0])
    revoke = asyncio.create_task(_Listener(writer).on_partitions_revoked({TopicPartition(writer.topic, 0)}))
    for _ in range(5):
        await asyncio.sleep(0)
    assert consumer.commits == [(0, 0, "batch:0-1")]
    clickhouse.gate.set()
    await revoke
    assert consumer.commits == [(0, 0, "batch:0-1"), (0, 2, ""), (0, 2, "batch:2-2"), (0, 3, "")]
    assert stored_offsets(clickhouse) == [0, 1, 2] and writer._inflight is None and not writer.batches


async def test_stopping_waits_for_the_flush_in_flight() -> None:
    writer, consumer, clickhouse = gated_writer()
    await writer._take(0, messages(0), writer.ready[0])
    await writer._start([0])
    clickhouse.gate.set()
    await writer.flush_all()
    assert consumer.commits == [(0, 0, "batch:0-0"), (0, 1, "")]


async def test_a_revoke_with_nothing_else_due_still_finishes_the_flush_in_flight() -> None:
    """Its done commit is made while the partition is ours (after, the group would refuse it)."""
    writer, consumer, clickhouse = gated_writer()
    await writer._take(0, messages(0, 1), writer.ready[0])
    await writer._start([0])
    clickhouse.gate.set()
    await _Listener(writer).on_partitions_revoked({TopicPartition(writer.topic, 0)})
    assert consumer.commits == [(0, 0, "batch:0-1"), (0, 2, "")]
