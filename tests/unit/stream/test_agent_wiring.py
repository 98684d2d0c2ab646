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
from faust.agents.agent import AgentTestWrapper
from faust.types import TP

from postbacks.catalog import EMPTY_CATALOG
from postbacks.settings import Settings
from schemas import CLICK, CONVERSION, POSTBACK_DUPLICATE, POSTBACK_RAW, POSTBACK_REJECTED, STREAM_TICK, Codec
from stream.app import StreamApp
from stream.decide import Emit
from tests.unit.stream.conftest import click, postback


@pytest.fixture
def stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StreamApp, list[Emit], list[Any]]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9", stream_store="memory", data_dir=tmp_path, stream_batch_max=1
    )  # a batch per record, taken at once: these tests look between records
    app = StreamApp(settings, EMPTY_CATALOG, {})
    app.app.finalize()
    app.app.flow_control.resume()
    sent: list[Emit] = []
    dead: list[Any] = []

    async def capture(emits: list[Emit]) -> list[Any]:
        sent.extend(emits)
        return []

    async def capture_dead(message: Any, exc: Exception) -> None:
        dead.append((message.offset, str(exc)))

    async def nothing_committed(partitions: list[Any]) -> dict[Any, int]:
        return {}

    async def log_starts_at_zero(*tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    internal = "<internal>"  # the topic of every record test_context hands the agent
    monkeypatch.setattr(app, "_source_names", app._source_names | {internal})
    assigned = {TP(topic, partition) for topic in app._source_names for partition in range(3)}
    monkeypatch.setattr(app.app.consumer, "assignment", lambda: assigned)
    monkeypatch.setattr(app, "_committed_offsets", nothing_committed)
    monkeypatch.setattr(app.app.consumer, "earliest_offsets", log_starts_at_zero)
    monkeypatch.setattr(app, "_send", capture)
    monkeypatch.setattr(app, "_to_dead_letter", capture_dead)
    changelog: list[tuple[str, bytes, bytes | None, int]] = []

    async def changelog_send(topic: str, key: bytes, value: bytes | None, partition: int, *_: Any) -> Any:
        changelog.append((topic, key, value, partition))
        delivered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    monkeypatch.setattr(app.app.producer, "send", changelog_send)  # only table writes reach it here
    put = AgentTestWrapper.put

    async def put_and_wait_for_its_batch(self: AgentTestWrapper, *args: Any, **kwargs: Any) -> Any:
        """The agent decides in batches: wait until the batch holding this record is done."""
        before = app.handled
        event = await put(self, *args, **{**kwargs, "wait": False})
        for _ in range(100_000):  # yields, not sleeps: some tests stop the clock
            if app.handled > before:
                return event
            await asyncio.sleep(0)
        raise AssertionError("the agent did not take the record")

    monkeypatch.setattr(AgentTestWrapper, "put", put_and_wait_for_its_batch)
    return app, sent, dead


async def test_agent_dispatches_holds_and_dead_letters(
    stream: tuple[StreamApp, list[Emit], list[Any]],
) -> None:
    app, sent, dead = stream
    clicks, raw = Codec(CLICK), Codec(POSTBACK_RAW)
    agent = app.agent
    first = postback("c1")
    async with agent.test_context() as ctx:
        await ctx.put(key=b"c1", value=clicks.encode(click("c1")), headers=clicks.headers)
        await ctx.put(key=b"c1", value=raw.encode(first), headers=raw.headers)
        await ctx.put(key=b"c1", value=raw.encode({**first, "request_id": "retry"}), headers=raw.headers)
        # A postback before its click is held, then decided when the click arrives.
        await ctx.put(key=b"c2", value=raw.encode(postback("c2")), headers=raw.headers)
        held = app._load(b"c2")
        assert held is not None and len(held["pending"]) == 1 and not sent[2:]
        await ctx.put(key=b"c2", value=clicks.encode(click("c2")), headers=clicks.headers)
        # Poison: right header, bytes that are not a postback.
        await ctx.put(key=b"c3", value=b"\xff\xff\xff\xff", headers=raw.headers)
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
        await ctx.put(key=b"c9", value=raw.encode(held), headers=raw.headers, partition=0)
        assert app.pending_index.get(b"c9") is not None and sent == []
        early = held["received_at"] + 1_000  # inside the grace period: nothing yet
        await ctx.put(key=b"tick", value=ticks.encode({"at": early}), headers=ticks.headers, partition=0)
        assert sent == []
        late = held["received_at"] + 10**9
        await ctx.put(key=b"tick", value=ticks.encode({"at": late}), headers=ticks.headers, partition=0)
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

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp.partition, offset))

    monkeypatch.setattr(app.app.consumer, "seek", seek)
    first, retry = postback("c1"), postback("c1", request_id="retry")
    async with app.agent.test_context() as ctx:
        await ctx.put(key=b"c1", value=clicks.encode(click("c1")), headers=clicks.headers)  # offset 0
        ctx.sent_offset = 2  # offset 1 never reaches the agent
        early = await ctx.put(key=b"c1", value=raw.encode(retry), headers=raw.headers)
        await ctx.put(key=b"c1", value=raw.encode(retry), headers=raw.headers)  # offset 3, in flight
        assert sent == [] and seeks == [(0, 1)]  # one rewind, nothing decided out of order
        assert early.message.acked  # so Faust records no ack for it and cannot commit past the hole
        topic = early.message.topic
        assert app.continuity.commit_limit(topic, 0) == 1  # the click at 0 finished; nothing past the hole
        ctx.sent_offset = 1  # the rewind brings the hole back, then what followed it
        await ctx.put(key=b"c1", value=raw.encode(first), headers=raw.headers)
        await ctx.put(key=b"c1", value=raw.encode(retry), headers=raw.headers)
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

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp.partition, offset))

    async def log_ends(*tps: Any) -> dict[Any, int]:
        return {tp: 2 if tp == TP("<internal>", 0) else 0 for tp in tps}  # only this one holds records

    monkeypatch.setattr(app.app.consumer, "seek", seek)
    monkeypatch.setattr(app.app.consumer, "highwaters", log_ends)
    async with app.agent.test_context() as ctx:
        ctx.sent_offset = 1  # offset 0 was fetched and dropped before the agent saw it
        late = await ctx.put(key=b"c2", value=clicks.encode(click("c2")), headers=clicks.headers)
        assert seeks == [(0, 0)] and app._load(b"c2") is None
        # The seek raced with records in flight and nothing else arrives: the clock asks again.
        await app._catch_up()
        assert seeks == [(0, 0)]  # not yet: records in flight get their time to drain
        with monkeypatch.context() as later:  # only the catch-up: Faust's stop needs a moving clock
            later.setattr("stream.app.time.monotonic", lambda: 10**9)
            await app._catch_up()
        assert seeks == [(0, 0), (0, 0)]  # only partition 0 has unread records
        ctx.sent_offset = 0
        await ctx.put(key=b"c1", value=clicks.encode(click("c1")), headers=clicks.headers)
        await ctx.put(key=b"c2", value=clicks.encode(click("c2")), headers=clicks.headers)
    assert app._load(b"c1") is not None and app._load(b"c2") is not None
    assert app.continuity.commit_limit(late.message.topic, 0) == 2


async def test_a_partition_starts_at_the_offset_the_group_committed_asked_once_per_assignment(
    stream: tuple[StreamApp, list[Emit], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, _ = stream
    clicks = Codec(CLICK)
    asked: list[list[Any]] = []
    seeks: list[tuple[int, int]] = []

    async def committed(partitions: list[Any]) -> dict[Any, int]:
        asked.append(partitions)
        return {TP("<internal>", 0): 3}

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp.partition, offset))

    monkeypatch.setattr(app, "_committed_offsets", committed)
    monkeypatch.setattr(app.app.consumer, "seek", seek)
    async with app.agent.test_context() as ctx:
        ctx.sent_offset = 4  # the group committed 3: the record at 3 was dropped on the way
        await ctx.put(key=b"c1", value=clicks.encode(click("c1")), headers=clicks.headers)
        assert seeks == [(0, 3)] and app._load(b"c1") is None
        ctx.sent_offset = 3
        await ctx.put(key=b"c0", value=clicks.encode(click("c0")), headers=clicks.headers)
        await ctx.put(key=b"c1", value=clicks.encode(click("c1")), headers=clicks.headers)
        ctx.sent_offset = 0
        await ctx.put(key=b"c5", value=clicks.encode(click("c5")), headers=clicks.headers, partition=1)
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

    async def revoked(tp: Any, offset: int) -> None:
        sought.append((tp, offset))
        raise IllegalStateError(f"No current assignment for partition {tp}")

    monkeypatch.setattr(app.app.consumer, "seek", revoked)
    tp = TP("clicks.raw", 0)
    await app._seek(tp, 29)  # does not raise
    assert sought == [(tp, 29)]


def test_every_table_changelog_is_created_before_faust_starts(
    stream: tuple[StreamApp, list[Emit], list[Any]],
) -> None:
    """stream/worker.py creates these first; a table left out would race Faust's own creation."""
    app, _, _ = stream
    changelogs = {table.changelog_topic.get_topic_name() for table in app.app.tables.values()}
    assert set(app.changelog_topics()) == changelogs and len(changelogs) == 3  # view-state too
    assert all(config["cleanup.policy"].startswith("compact") for config in app.changelog_topics().values())
