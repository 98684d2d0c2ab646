"""The writer's run loop: when a batch that fell due during an insert is flushed.

A slow insert must not hold the rows that arrived meanwhile for longer than it lasts: they
are due when it ends, and go in the next flush at once. (The loop used to wait as long again
after every flush by age, which at 1,000 postbacks/s held them ~0.5 s more: the end-to-end
p99 went from 2.9-3.3 s to 1.9-2.2 s without that wait, docs/benchmarks.md.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka import TopicPartition

from postbacks.settings import Settings
from sinks.clickhouse import ClickHouse
from sinks.writer import TableWriter
from tests.unit.sinks.test_writer_rebalance import CLICKS, FakeClickHouse, FakeConsumer, messages

SLOW_INSERT_S = 2.0


@dataclass
class TimedClickHouse(FakeClickHouse):
    """The first insert takes SLOW_INSERT_S; every insert's start and end are noted."""

    started: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    second_done: asyncio.Event = field(default_factory=asyncio.Event)

    async def insert_avro(self, table: str, container: bytes, columns: Any, token: str) -> None:
        self.started.append(time.monotonic())
        if len(self.started) == 1:
            await asyncio.sleep(SLOW_INSERT_S)
        await super().insert_avro(table, container, columns, token)
        self.ended.append(time.monotonic())
        if len(self.ended) == 2:
            self.second_done.set()


@dataclass
class ScriptedConsumer(FakeConsumer):
    """Hands over each fetch of `fetches` once its condition holds; meanwhile waits out the timeout."""

    fetches: list[tuple[Callable[[], bool], list[Any]]] = field(default_factory=list)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self.fetches and self.fetches[0][0]():
            return {TopicPartition(self.topic, 0): self.fetches.pop(0)[1]}
        await asyncio.sleep(min(timeout_ms, 10) / 1000)
        return {}


async def test_rows_that_fell_due_during_a_slow_insert_are_flushed_as_soon_as_it_ends() -> None:
    clickhouse = TimedClickHouse()
    writer = TableWriter(CLICKS, Settings(sink_max_age_ms=50), cast(ClickHouse, clickhouse))

    def inserting() -> bool:
        return bool(clickhouse.started)

    fetches = [(lambda: True, messages(0, 1)), (inserting, messages(2, 3))]
    consumer = ScriptedConsumer(writer.topic, fetches=fetches)
    writer.consumer = cast(Any, consumer)
    writer._sought(TopicPartition(writer.topic, 0), 0)
    stop = asyncio.Event()
    run = asyncio.create_task(writer.run(stop))
    try:
        await asyncio.wait_for(clickhouse.second_done.wait(), 4 * SLOW_INSERT_S)
    finally:
        stop.set()
        await run
    assert [offsets for _, offsets in clickhouse.inserts] == [[0, 1], [2, 3]]
    # Records 2 and 3 came while the first insert ran, and were due long before it ended.
    gap = clickhouse.started[1] - clickhouse.ended[0]
    assert gap < SLOW_INSERT_S / 2, f"the next flush waited {gap:.2f} s after a {SLOW_INSERT_S} s insert"
    assert consumer.commits == [(0, 0, "batch:0-1"), (0, 2, ""), (0, 2, "batch:2-3"), (0, 4, "")]
