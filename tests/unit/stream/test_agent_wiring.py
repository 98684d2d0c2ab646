"""The Faust agent's wiring, with Faust's own harness (agent.test_context), no broker.

Dispatch by schema header, the click table, holding a postback until its click,
and dead-lettering a poison message. Kafka outputs are captured at the one method
that sends them; everything else is the real app.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from postbacks.catalog import EMPTY_CATALOG
from postbacks.settings import Settings
from schemas import CLICK, CONVERSION, POSTBACK_DUPLICATE, POSTBACK_RAW, POSTBACK_REJECTED, STREAM_TICK, Codec
from stream.app import StreamApp
from stream.decide import Emit
from stream.produce import SentBatch
from stream.source_batches import SourceBatch
from tests.unit.stream.conftest import click, postback

SOURCE = "<internal>"  # one source topic stands for both: decisions do not depend on which


Record = ConsumerRecord[bytes, bytes]


class Feed:
    """Hands the agent source records as the consumer does: a fetch at a time (stream/source_batches.py).

    `offset` is the next record's offset (a test sets it to make holes and replays);
    `put` returns once the agent has finished the batch.
    """

    def __init__(self, app: StreamApp, ctx: Any) -> None:
        self.app, self.ctx, self.offset = app, ctx, 0

    def record(
        self, key: bytes, value: bytes, headers: Any, partition: int = 0
    ) -> ConsumerRecord[bytes, bytes]:
        offset, self.offset = self.offset, self.offset + 1
        return ConsumerRecord(
            SOURCE, partition, offset, 0, 0, key, value, None, len(key), len(value), headers
        )

    async def put(
        self, key: bytes, value: bytes, headers: Any, partition: int = 0
    ) -> ConsumerRecord[bytes, bytes]:
        record = self.record(key, value, headers, partition)
        await self.batch([record])
        return record

    async def batch(self, records: list[Record]) -> None:
        by_partition: dict[int, list[Any]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        batch = SourceBatch(
            self.app.app.consumer_generation_id,
            [(TP(SOURCE, partition), rs) for partition, rs in by_partition.items()],
        )
        before = self.app.handled
        await self.ctx.put(value=batch, wait=False)
        for _ in range(100_000):  # yields, not sleeps: some tests stop the clock
            if self.app.handled > before:
                return
            await asyncio.sleep(0)
        raise AssertionError("the agent did not take the batch")


@pytest.fixture
def stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StreamApp, list[Emit], list[Any]]:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9", stream_store="memory", data_dir=tmp_path)
    app = StreamApp(settings, EMPTY_CATALOG, {})
    app.app.finalize()
    app.app.flow_control.resume()
    sent: list[Emit] = []
    dead: list[Any] = []

    async def capture(emits: list[Emit], buffer: Any) -> list[SentBatch]:
        sent.extend(emits)
        return []

    async def capture_dead(message: Any, exc: Exception) -> None:
        dead.append((message.offset, str(exc)))

    async def nothing_committed(partitions: list[Any]) -> dict[Any, int]:
        return {}

    async def log_starts_at_zero(*tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    monkeypatch.setattr(app, "_source_names", app._source_names | {SOURCE})
    assigned = {TP(topic, partition) for topic in app._source_names for partition in range(3)}
    monkeypatch.setattr(app.app.consumer, "assignment", lambda: assigned)
    monkeypatch.setattr(app, "_committed_offsets", nothing_committed)
    monkeypatch.setattr(app.app.consumer, "earliest_offsets", log_starts_at_zero)
    monkeypatch.setattr(app, "_send", capture)
    monkeypatch.setattr(app, "_to_dead_letter", capture_dead)

    class Changelog:
        """Only table writes reach the batch sender here: acknowledged at once."""

        async def send(self, records: Any) -> list[SentBatch]:
            delivered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            delivered.set_result(None)
            return [SentBatch(r.topic, r.partition or 0, 1, delivered) for r in records]

    changelog = Changelog()
    monkeypatch.setattr(app, "_sender", lambda: changelog)
    return app, sent, dead


async def test_agent_dispatches_holds_and_dead_letters(
    stream: tuple[StreamApp, list[Emit], list[Any]],
) -> None:
    app, sent, dead = stream
    clicks, raw = Codec(CLICK), Codec(POSTBACK_RAW)
    agent = app.agent
    first = postback("c1")
    async with agent.test_context() as ctx:
        feed = Feed(app, ctx)
        await feed.put(b"c1", clicks.encode(click("c1")), clicks.headers)
        await feed.put(b"c1", raw.encode(first), raw.headers)
        await feed.put(b"c1", raw.encode({**first, "request_id": "retry"}), raw.headers)
        # A postback before its click is held, then decided when the click arrives.
        await feed.put(b"c2", raw.encode(postback("c2")), raw.headers)
        held = app._load(b"c2")
        assert held is not None and len(held["pending"]) == 1 and not sent[2:]
        await feed.put(b"c2", clicks.encode(click("c2")), clicks.headers)
        # Poison: right header, bytes that are not a postback.
        await feed.put(b"c3", b"\xff\xff\xff\xff", raw.headers)
    assert [e.kind for e in sent] == ["conversion", "duplicate", "conversion"]
    conversion = Codec(CONVERSION).decode_version(sent[0].value, sent[0].schema_version)
    duplicate = Codec(POSTBACK_DUPLICATE).decode_version(sent[1].value, sent[1].schema_version)
    assert conversion["click_id"] == "c1" and duplicate["request_id"] == "retry"
    state = app._load(b"c2")
    assert state is not None and state["pending"] == [] and state["click"] is not None
    assert len(dead) == 1 and "cannot decode" in dead[0][1]


async def test_a_tick_on_the_clicks_topic_refuses_a_postback_whose_click_never_came(
    stream: tuple[StreamApp, list[Emit], list[Any]],
) -> None:
    app, sent, _ = stream
    raw, ticks = Codec(POSTBACK_RAW), Codec(STREAM_TICK)
    held = postback("c9")
    async with app.agent.test_context() as ctx:
        feed = Feed(app, ctx)
        await feed.put(b"c9", raw.encode(held), raw.headers, partition=0)
        assert app.pending_index.get(b"c9") is not None and sent == []
        early = held["received_at"] + 1_000  # inside the grace period: nothing yet
        await feed.put(b"tick", ticks.encode({"at": early}), ticks.headers, partition=0)
        assert sent == []
        late = held["received_at"] + 10**9
        await feed.put(b"tick", ticks.encode({"at": late}), ticks.headers, partition=0)
    [refusal] = sent
    record = Codec(POSTBACK_REJECTED).decode_version(refusal.value, refusal.schema_version)
    assert (record["request_id"], record["reason"]) == (held["request_id"], "unknown_click")
    assert app._load(b"c9") is None and app.pending_index.get(b"c9") is None


async def test_a_record_after_a_hole_is_not_processed_and_its_partition_is_rewound(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, sent, _ = stream
    clicks, raw = Codec(CLICK), Codec(POSTBACK_RAW)
    seeks: list[tuple[int, int]] = []

    async def seek(partitions: dict[Any, int]) -> None:
        seeks.extend((tp.partition, offset) for tp, offset in partitions.items())

    monkeypatch.setattr(app.app.consumer, "seek_wait", seek)
    first, retry = postback("c1"), postback("c1", request_id="retry")
    async with app.agent.test_context() as ctx:
        feed = Feed(app, ctx)
        await feed.put(b"c1", clicks.encode(click("c1")), clicks.headers)  # offset 0
        feed.offset = 2  # offset 1 never reaches the agent
        early = await feed.put(b"c1", raw.encode(retry), raw.headers)
        await feed.put(b"c1", raw.encode(retry), raw.headers)  # offset 3, in flight
        assert sent == [] and seeks == [(0, 1)]  # one rewind, nothing decided out of order
        topic = early.topic
        assert app.continuity.commit_limit(topic, 0) == 1  # the click at 0 finished; nothing past the hole
        feed.offset = 1  # the rewind brings the hole back, then what followed it
        await feed.put(b"c1", raw.encode(first), raw.headers)
        await feed.put(b"c1", raw.encode(retry), raw.headers)
    assert [(e.kind, e.key) for e in sent] == [("conversion", b"c1"), ("duplicate", b"c1")]
    duplicate = Codec(POSTBACK_DUPLICATE).decode_version(sent[1].value, sent[1].schema_version)
    assert duplicate["request_id"] == "retry"  # the first in log order won, as without the hole
    assert app.processed["rewound"] == 2
    assert app.continuity.commit_limit(topic, 0) == 3


async def test_a_record_dropped_before_the_first_commit_is_sought_and_a_lost_rewind_is_retried(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No committed offset: the partition must start at the log's first record (offset 0 here)."""
    app, _, _ = stream
    clicks = Codec(CLICK)
    seeks: list[tuple[int, int]] = []

    async def seek(partitions: dict[Any, int]) -> None:
        seeks.extend((tp.partition, offset) for tp, offset in partitions.items())

    async def log_ends(*tps: Any) -> dict[Any, int]:
        return {tp: 2 if tp == TP(SOURCE, 0) else 0 for tp in tps}  # only this one holds records

    monkeypatch.setattr(app.app.consumer, "seek_wait", seek)
    monkeypatch.setattr(app.app.consumer, "highwaters", log_ends)
    async with app.agent.test_context() as ctx:
        feed = Feed(app, ctx)
        feed.offset = 1  # offset 0 was fetched and dropped before the agent saw it
        late = await feed.put(b"c2", clicks.encode(click("c2")), clicks.headers)
        assert seeks == [(0, 0)] and app._load(b"c2") is None
        # The seek raced with records in flight and nothing else arrives: the clock asks again.
        await app._catch_up()
        assert seeks == [(0, 0)]  # not yet: records in flight get their time to drain
        with monkeypatch.context() as later:  # only the catch-up: Faust's stop needs a moving clock
            later.setattr("stream.app.time.monotonic", lambda: 10**9)
            await app._catch_up()
        assert seeks == [(0, 0), (0, 0)]  # only partition 0 has unread records
        feed.offset = 0
        await feed.put(b"c1", clicks.encode(click("c1")), clicks.headers)
        await feed.put(b"c2", clicks.encode(click("c2")), clicks.headers)
    assert app._load(b"c1") is not None and app._load(b"c2") is not None
    assert app.continuity.commit_limit(late.topic, 0) == 2


async def test_a_partition_starts_at_the_offset_the_group_committed_asked_once_per_assignment(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, _ = stream
    clicks = Codec(CLICK)
    asked: list[list[Any]] = []
    seeks: list[tuple[int, int]] = []

    async def committed(partitions: list[Any]) -> dict[Any, int]:
        asked.append(partitions)
        return {TP(SOURCE, 0): 3}

    async def seek(partitions: dict[Any, int]) -> None:
        seeks.extend((tp.partition, offset) for tp, offset in partitions.items())

    monkeypatch.setattr(app, "_committed_offsets", committed)
    monkeypatch.setattr(app.app.consumer, "seek_wait", seek)
    async with app.agent.test_context() as ctx:
        feed = Feed(app, ctx)
        feed.offset = 4  # the group committed 3: the record at 3 was dropped on the way
        await feed.put(b"c1", clicks.encode(click("c1")), clicks.headers)
        assert seeks == [(0, 3)] and app._load(b"c1") is None
        feed.offset = 3
        await feed.put(b"c0", clicks.encode(click("c0")), clicks.headers)
        await feed.put(b"c1", clicks.encode(click("c1")), clicks.headers)
        feed.offset = 0
        await feed.put(b"c5", clicks.encode(click("c5")), clicks.headers, partition=1)
    assert app._load(b"c0") is not None and app._load(b"c1") is not None and app._load(b"c5") is not None
    assert len(asked) == 1  # partition 1 (nothing committed: from the log's first offset) asked no more


async def test_a_rewind_of_a_partition_revoked_meanwhile_is_left_to_its_next_owner(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebalance during the catch-up timer's awaits: the seek finds the partition gone.

    aiokafka raises IllegalStateError for it; that used to crash the worker (seen on Apache
    Kafka in the two-worker kill test: the survivor crashed and the group was left empty).
    """
    from aiokafka.errors import IllegalStateError

    app, _, _ = stream
    sought: list[tuple[Any, int]] = []

    async def revoked(partitions: dict[Any, int]) -> None:
        sought.extend(partitions.items())
        raise IllegalStateError(f"No current assignment for partition {list(partitions)}")

    monkeypatch.setattr(app.app.consumer, "seek_wait", revoked)
    tp = TP("clicks.raw", 0)
    await app._seek(tp, 29)  # does not raise
    assert sought == [(tp, 29)]


async def test_a_fetch_is_one_batch_a_hole_holds_back_only_its_partition(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several partitions in one fetch: each is admitted on its own, a poison record goes alone."""
    app, sent, dead = stream
    clicks, raw = Codec(CLICK), Codec(POSTBACK_RAW)
    seeks: list[tuple[int, int]] = []

    async def seek(partitions: dict[Any, int]) -> None:
        seeks.extend((tp.partition, offset) for tp, offset in partitions.items())

    monkeypatch.setattr(app.app.consumer, "seek_wait", seek)
    async with app.agent.test_context() as ctx:
        feed = Feed(app, ctx)
        fetch = [feed.record(b"c1", clicks.encode(click("c1")), clicks.headers, partition=0)]
        fetch.append(feed.record(b"c9", b"\xff\xff", raw.headers, partition=0))  # poison, between good ones
        fetch.append(feed.record(b"c1", raw.encode(postback("c1")), raw.headers, partition=0))
        feed.offset = 5  # partition 1 starts after a hole: none of its records is decided
        fetch.append(feed.record(b"c2", clicks.encode(click("c2")), clicks.headers, partition=1))
        fetch.append(feed.record(b"c2", raw.encode(postback("c2")), raw.headers, partition=1))
        await feed.batch(fetch)
    assert [(e.kind, e.key) for e in sent] == [("conversion", b"c1")]
    assert dead == [(1, dead[0][1])] and "cannot decode" in dead[0][1]
    assert seeks == [(1, 0)] and app._load(b"c2") is None
    assert app.continuity.commit_limit(SOURCE, 0) == 3 and app.continuity.commit_limit(SOURCE, 1) == 0
    assert app.processed["rewound"] == 2


async def test_a_fetch_from_before_a_rebalance_is_left_unread(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust seeks every assigned partition to its committed offset: the fetch is read again then."""
    app, sent, _ = stream
    clicks = Codec(CLICK)
    async with app.agent.test_context() as ctx:
        feed = Feed(app, ctx)
        record = feed.record(b"c1", clicks.encode(click("c1")), clicks.headers)
        monkeypatch.setattr(app.app, "consumer_generation_id", app.app.consumer_generation_id + 1)
        stale = SourceBatch(app.app.consumer_generation_id - 1, [(TP(SOURCE, 0), [record])])
        await feed.ctx.put(value=stale, wait=False)
        feed.offset = 0
        fresh = feed.record(b"c2", clicks.encode(click("c2")), clicks.headers, partition=1)
        await feed.batch([fresh])  # returns after the stale batch: the agent takes them in order
        await feed.batch([])  # ... so this one returns after the fresh one
    assert app._load(b"c1") is None and app.continuity.commit_limit(SOURCE, 0) == 0 and sent == []
    assert app._load(b"c2") is not None  # the current generation's fetch was decided


def test_every_table_changelog_is_created_before_faust_starts(
    stream: tuple[StreamApp, list[Emit], list[Any]],
) -> None:
    """stream/worker.py creates these first; a table left out would race Faust's own creation."""
    app, _, _ = stream
    changelogs = {table.changelog_topic.get_topic_name() for table in app.app.tables.values()}
    assert set(app.changelog_topics()) == changelogs and len(changelogs) == 3  # view-state too
    assert all(config["cleanup.policy"].startswith("compact") for config in app.changelog_topics().values())


async def test_the_workers_consumer_long_polls_the_configured_wait(tmp_path: Path) -> None:
    """STREAM_FETCH_MAX_WAIT_MS reaches the aiokafka consumer Faust's consumer thread builds."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        stream_store="memory",
        data_dir=tmp_path,
        stream_fetch_max_wait_ms=123,
    )
    app = StreamApp(settings, EMPTY_CATALOG, {})
    thread = app.app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 123  # Faust's own would be 1500
    finally:
        await consumer.stop()  # never started: closes what the constructor opened
