"""A table writer: consume one topic, insert into ClickHouse in batches, exactly once.

Batches hold one Kafka partition's consecutive offsets. The batches due together are one group
(up to MAX_GROUP partitions and `sink_batch_rows` rows, `form_groups`), and go through:
1. plan     commit each batch's first offset with metadata `batch:<first>-<last>`, followed by
            `;with:<p>:<first>-<last>,...` naming every batch of the group when it has more than one;
2. insert   the whole group in ONE insert, token `<table>:<p>:<first>-<last>[,<p>:<first>-<last>...]`;
3. done     commit each `<last>+1`.
One insert per group, not per partition: an insert's cost on the engine is mostly fixed (its
materialized views, its new parts), so a flush of six small batches costs one insert, not six.
A batch is due at `sink_batch_rows` or once its first record was written `sink_max_age_ms` ago;
the batches due together share one plan commit and one done commit. With one flush in flight at
a time, slow inserts grow the batches by themselves: what arrives during a flush is due when it
ends and goes in the next one, so the engine runs at most one insert per `max(insert, max age)`.
The run loop does not wait for an insert: it goes on fetching and taking the next records while
ClickHouse inserts, and finishes the flush (waits for the insert, commits the done offsets) before
planning the next one, before a rebalance goes ahead, and at the end. At most one flush is in flight,
so a partition's plan is never committed before the batch before it is done.
After a crash anywhere in between, the restarted writer finds the plan in the committed metadata
and re-forms exactly that batch; a batch planned with others is inserted again with the records
of the whole group (the others' planned ranges read straight from Kafka, whoever owns them now)
and exactly that token, so each owner of a part of the group repeats the same insert.
ClickHouse then drops what the first attempt stored and inserts what it did not:
that includes the materialized views, which an interrupted insert can leave
behind the table they read from (a SIGKILL between the two). Every table and
aggregate carries non_replicated_deduplication_window for this.

A rebalance, or a commit the group refuses, seeks partitions back to their committed
offsets; records fetched before that seek are dropped, not taken, since they arrive again.

Records the stream may have re-emitted after its own crash (the same conversion
version or request id at a new offset) are dropped if already stored at another
offset, so a replayed batch is filtered exactly as the first attempt was.

While ClickHouse is unavailable the writer retries with backoff and, once the next batch is full,
stops fetching: offsets stay uncommitted, memory stays bounded by the batches in hand.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from postbacks import shutdown
from postbacks.fetched import light_records
from postbacks.groups import sink_client, sink_group
from postbacks.partitions import ReadyPartitions
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import Codec, SchemaError, all_versions, schema_name
from sinks import metrics
from sinks.avro_block import container_blocks, header, prefix_reader, with_position_fields
from sinks.clickhouse import ClickHouse
from sinks.tables import Record, TableSpec

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0

# How long a poll waits for records: bounds only the wait on an idle topic (and a stop's delay).
POLL_TIMEOUT_MS = 200
# While an insert is in flight: how long a fetch waits at most, so that its done commit and the
# batches due behind it go soon after it ends.
INFLIGHT_POLL_MS = 20
_PLAN = re.compile(r"^batch:(\d+)-(\d+)(?:;with:(\d+:\d+-\d+(?:,\d+:\d+-\d+)*))?$")
_SPAN = re.compile(r"(\d+):(\d+)-(\d+)")
# Partitions inserted together at most: every batch's plan names the whole group, and a commit's
# metadata is limited (offset.metadata.max.bytes, 4 KiB by default).
MAX_GROUP = 64
# A batch planned in a group: (partition, first offset, last offset).
Span = tuple[int, int, int]


# A record waiting in a batch: its offset, its Avro bytes and the schema version it was written with.
# Decoding waits for the flush, which may leave it to ClickHouse (sinks/avro_block.py).
Pending = tuple[int, bytes, int]
_VERSION = operator.itemgetter(2)


@dataclass
class Batch:
    """Consecutive records of one partition waiting to be inserted."""

    partition: int
    rows: list[Pending] = field(default_factory=list)
    # Wall-clock seconds since its first record was written to Kafka (or taken, if that is earlier):
    # the age bound counts the time a record spent fetched but not yet taken (during a flush) too.
    started: float = 0.0
    # Wall-clock seconds when its first record was taken (`started` to `taken`: Kafka's delivery).
    taken: float = 0.0
    # Set when re-forming a batch planned before a crash: its exact range.
    planned: tuple[int, int] | None = None
    # Every batch of the group it was (or is being) planned and inserted with, itself included;
    # empty when it went alone.
    group: tuple[Span, ...] = ()

    def add(self, offset: int, value: bytes, version: int, written_at: float | None = None) -> None:
        if not self.rows:
            now = time.time()
            # Never later than now: a producer's clock ahead of ours must not delay the flush.
            self.started = now if written_at is None else min(now, written_at)
            self.taken = now
        self.rows.append((offset, value, version))

    @property
    def first(self) -> int:
        return self.planned[0] if self.planned else self.rows[0][0]

    @property
    def last(self) -> int:
        return self.planned[1] if self.planned else self.rows[-1][0]

    @property
    def span(self) -> Span:
        return (self.partition, self.first, self.last)

    @property
    def plan(self) -> str:
        text = f"batch:{self.first}-{self.last}"
        return text + ";with:" + _spans_text(self.group) if len(self.group) > 1 else text

    def token(self, table: str) -> str:
        """Names exactly this batch's group: the same offsets give the same token after a restart."""
        return group_token(table, self.group or (self.span,))

    def complete(self, offset: int) -> bool:
        """A re-formed batch is complete once the consumer has passed its planned last offset."""
        return self.planned is not None and offset >= self.planned[1]

    def due(self, max_rows: int, max_wait_s: float) -> bool:
        if self.planned is not None:
            return False  # only `complete` flushes a re-formed batch
        return bool(self.rows) and (len(self.rows) >= max_rows or time.time() - self.started >= max_wait_s)


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A flush whose batches are planned and being inserted; its done commit comes in `_finish`."""

    batches: list[Batch]
    insert: asyncio.Task[None]
    planned: float  # perf_counter when the plan was committed and the insert started
    plan_s: float


def form_groups(batches: Sequence[Batch], max_rows: int) -> list[list[Batch]]:
    """The batches in groups of at most MAX_GROUP, each of at most `max_rows` rows unless one batch alone.

    Small batches (a flush by age) share one insert; full ones (a backlog) keep an insert each,
    so an insert never holds more than SINK_BATCH_ROWS rows because of grouping.
    """
    groups: list[list[Batch]] = []
    rows = 0
    for batch in batches:
        if groups and len(groups[-1]) < MAX_GROUP and rows + len(batch.rows) <= max_rows:
            groups[-1].append(batch)
            rows += len(batch.rows)
        else:
            groups.append([batch])
            rows = len(batch.rows)
    return groups


def poll_timeout_ms(batches: Iterable[Batch], max_age_s: float, now: float) -> int:
    """How long a fetch may wait: until the oldest batch in hand is due, at most POLL_TIMEOUT_MS.

    A fetch returns as soon as records arrive; this bounds only the wait on a quiet topic, so
    a batch is flushed on time even when nothing more comes.
    """
    wait = POLL_TIMEOUT_MS / 1000
    for batch in batches:
        if batch.rows and batch.planned is None:
            wait = min(wait, batch.started + max_age_s - now)
    return max(0, round(wait * 1000))


def _spans_text(spans: Iterable[Span]) -> str:
    return ",".join(f"{p}:{first}-{last}" for p, first, last in sorted(spans))


def group_token(table: str, spans: Iterable[Span]) -> str:
    """`<table>:<p>:<first>-<last>[,...]` by partition: a batch alone keeps the token it always had."""
    return f"{table}:{_spans_text(spans)}"


def parse_plan(metadata: str | None) -> tuple[int, int] | None:
    match = _PLAN.match(metadata or "")
    return (int(match[1]), int(match[2])) if match else None


def parse_group(metadata: str | None) -> tuple[Span, ...]:
    """The group a plan names (every batch inserted together), empty for a batch planned alone."""
    match = _PLAN.match(metadata or "")
    if match is None or match[3] is None:
        return ()
    return tuple((int(p), int(first), int(last)) for p, first, last in _SPAN.findall(match[3]))


def new_rows(
    spec: TableSpec, partition: int, records: Sequence[tuple[int, Record]], stored: Sequence[tuple[Any, ...]]
) -> list[tuple[int, Record]]:
    """The (offset, record)s to insert: each identity once, none stored at an offset outside this batch.

    `stored` rows are (identity..., kafka_partition, kafka_offset).
    """
    return new_group_rows(spec, {partition: records}, stored)[partition]


def new_group_rows(
    spec: TableSpec,
    records: Mapping[int, Sequence[tuple[int, Record]]],
    stored: Sequence[tuple[Any, ...]],
) -> dict[int, list[tuple[int, Record]]]:
    """`new_rows` for a group's batches by partition: as if each were filtered after the one before."""
    if spec.identity is None:
        return {p: list(rs) for p, rs in records.items()}
    own = {(partition, offset) for partition, rs in records.items() for offset, _ in rs}
    seen = {tuple(row[:-2]) for row in stored if (row[-2], row[-1]) not in own}
    kept: dict[int, list[tuple[int, Record]]] = {}
    for partition, rs in records.items():
        out = kept[partition] = []
        for offset, record in rs:
            identity = spec.identity(record)
            if identity in seen:
                continue
            seen.add(identity)
            out.append((offset, record))
    return kept


class TableWriter:
    def __init__(self, spec: TableSpec, settings: Settings, clickhouse: ClickHouse) -> None:
        self.spec = spec
        self.settings = settings
        self.clickhouse = clickhouse
        self.topic = spec.topic(Topics(settings.topic_prefix))
        self.group = sink_group(settings.topic_prefix, spec.name)
        self.codec = Codec(spec.schema)
        # The container header for batches ClickHouse decodes: records of the newest version only.
        newest = all_versions()[spec.schema][self.codec.version]
        self.avro_header = header(with_position_fields(newest.declared))
        # The identity fields read off a datum's front, so ClickHouse can decode the rest.
        self._identity_of = (
            prefix_reader(newest.declared, spec.identity_fields) if spec.identity is not None else None
        )
        self._avro = spec.decode_in_clickhouse and (spec.identity is None or self._identity_of is not None)
        # Writer version by a record's headers (a handful of distinct ones), None for a mark.
        self._versions: dict[tuple[Any, ...], int | None] = {}
        self.batches: dict[int, Batch] = {}
        # Partitions whose committed plan has been read (see on_assigned), and their last seeks.
        self.ready = ReadyPartitions()
        self.inserted = 0
        self.undecodable = 0
        # At most one flush in flight (planned, inserting); its done commit before the next plan.
        self._inflight: _InFlight | None = None
        self._flush_lock = asyncio.Lock()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.group,
            client_id=sink_client(spec.name),
            # Static member (KIP-345): a sink restarted after a crash takes its partitions back at
            # once instead of waiting for its old session to expire. One name per sink process.
            group_instance_id=f"{sink_client(spec.name)}-{settings.sink_name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # A long ClickHouse outage must not cost the group membership: we are retrying, not stuck.
            max_poll_interval_ms=3_600_000,
        )

    async def run(self, stop: asyncio.Event) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        await self.consumer.start()
        light_records(self.consumer)  # tuples of the four fields read here (postbacks/fetched.py)
        max_rows, max_age = self.settings.sink_batch_rows, self.settings.sink_max_age_ms / 1000
        try:
            while not stop.is_set():
                if self._inflight_done():
                    await self._finish()
                if self._inflight is None:
                    wait_ms = poll_timeout_ms(self.batches.values(), max_age, time.time())
                else:
                    wait_ms = INFLIGHT_POLL_MS  # a fetch cannot be woken by the insert's end
                fetched = await self.consumer.getmany(timeout_ms=wait_ms, max_records=max_rows)
                seeks = self.ready.snapshot()  # as of this fetch; a rebalance may run during any flush below
                for tp, messages in fetched.items():
                    await self._take(tp.partition, messages, seeks.get(tp.partition))
                if self._inflight_done():
                    await self._finish()
                due = [p for p, batch in self.batches.items() if batch.due(max_rows, max_age)]
                full = any(len(self.batches[p].rows) >= max_rows for p in due)
                if due and (full or self._inflight is None):
                    # A full batch waits here for the flush in flight: memory stays bounded by
                    # the batches in hand, also while ClickHouse is away.
                    await self._start(due)
            await self.flush_all()
        finally:
            if self._inflight is not None:  # stopped by an error: the plan stays for the restart
                self._inflight.insert.cancel()
            await shutdown.close(self.consumer.stop(), f"sink {self.spec.name} consumer")

    def _sought(self, tp: TopicPartition, offset: int) -> None:
        """Seek and mark the partition ready from there, with no await in between."""
        self.consumer.seek(tp, offset)
        self.ready.sought(tp.partition)

    async def _take(self, partition: int, messages: Sequence[Any], seek: int | None) -> None:
        # `ready` can change only while this awaits (a flush): checked at the start and after each.
        if not self.ready.current(partition, seek):
            return  # fetched before the plan was read or before a seek back: they come again
        batch = self.batches.setdefault(partition, Batch(partition))
        if batch.planned is None:
            self._add_all(batch, messages)  # an open batch takes them all: nothing to flush on the way
            return
        for message in messages:
            if batch.planned is not None and message.offset > batch.planned[1]:
                await self.flush(partition)  # the re-formed batch ends here, exactly as planned
                if not self.ready.current(partition, seek):
                    return
                batch = self.batches.setdefault(partition, Batch(partition))
            self._add(batch, message)
            if batch.complete(message.offset):
                await self.flush(partition)
                if not self.ready.current(partition, seek):
                    return
                batch = self.batches.setdefault(partition, Batch(partition))

    def _add_all(self, batch: Batch, messages: Sequence[Any]) -> None:
        """`_add` for each record, with what is per record kept to a lookup and an append.

        The sink's main thread is its bound (the Kafka client's records, then this loop): the
        headers' version comes from the cache `_version` fills, and the row goes straight in.
        """
        known, rows = self._versions, batch.rows
        for message in messages:
            try:
                version = known[message.headers]
            except (KeyError, TypeError):  # headers not seen yet (or a list): the full path
                self._add(batch, message)
                continue
            if version is None:
                continue  # a mark: takes an offset, adds no row
            if rows:
                rows.append((message.offset, message.value, version))
            else:  # the first row also starts the batch's clock
                batch.add(message.offset, message.value, version, message.timestamp / 1000)

    def _version(self, headers: Any) -> int | None:
        """The schema version a record was written with, from its headers; None for a mark."""
        key = tuple(headers or ())
        try:
            return self._versions[key]
        except KeyError:
            pass
        version = None if schema_name(headers) in self.spec.marks else self.codec.writer_version(headers)
        if len(self._versions) >= 64:  # distinct headers are a handful; never grow without bound
            self._versions.clear()
        self._versions[key] = version
        return version

    def _undecodable(self, partition: int, offset: int, exc: SchemaError) -> None:
        self.undecodable += 1
        metrics.RECORDS.labels(self.spec.name, "undecodable").inc()
        log.error(
            "undecodable record skipped",
            extra={"table": self.spec.name, "partition": partition, "offset": offset, "error": str(exc)},
        )

    def _decode(self, batch: Batch) -> list[tuple[int, Record]]:
        records: list[tuple[int, Record]] = []
        for offset, value, version in batch.rows:
            try:
                records.append((offset, self.codec.decode_version(value, version)))
            except SchemaError as exc:
                self._undecodable(batch.partition, offset, exc)
        return records

    async def flush_all(self) -> None:
        """Flush every fresh batch (on the way out). A re-formed batch still waiting for its planned
        last offset stays planned in Kafka: inserting part of it, then committing past it, would skip
        the rest of its records."""
        await self.flush_many([p for p, batch in self.batches.items() if batch.planned is None])

    async def flush(self, partition: int) -> None:
        await self.flush_many([partition])

    async def flush_many(self, partitions: Sequence[int]) -> None:
        """Insert these partitions' batches, each exactly once, and wait until they are done."""
        await self._start(partitions)
        await self._finish()

    async def _start(self, partitions: Sequence[int]) -> None:
        """Plan these partitions' batches and start inserting them; `_finish` commits them done.

        The flush before is finished first, so a partition's plan is never committed before the
        batch before it is done (a restart finds at most one plan a partition). The fresh batches
        form groups (`form_groups`), each inserted by one call with one token; a batch re-formed
        after a crash is inserted again with the group it was planned with. The plans of all of
        them travel in one OffsetCommit request and so do their done offsets, so a flush of many
        partitions costs two broker round trips and one insert on the engine. The insert runs in
        a task of its own: the run loop takes the next records meanwhile.
        """
        async with self._flush_lock:
            await self._finish_locked()
            popped = [batch for p in partitions if (batch := self.batches.pop(p, None)) is not None]
            batches = [b for b in popped if b.rows or b.planned is not None]
            started = time.perf_counter()
            self._observe_stages(batches, time.time())
            fresh = [b for b in batches if b.planned is None]
            groups = form_groups(fresh, self.settings.sink_batch_rows)
            for group in groups:
                spans = tuple(b.span for b in group) if len(group) > 1 else ()
                for batch in group:
                    batch.group = spans
            plans = {self._tp(b): OffsetAndMetadata(b.first, b.plan) for b in fresh}
            if plans and not await self._commit(plans):
                for batch in fresh:  # not planned, so not inserted: its records must come again
                    self._rewind(self._tp(batch), batch.first)
                batches, groups = [b for b in batches if b.planned is not None], []
            if batches:
                groups += [[b] for b in batches if b.planned is not None]
                planned = time.perf_counter()
                insert = asyncio.create_task(self._insert_groups(groups))
                self._inflight = _InFlight(batches, insert, planned, planned - started)

    async def _insert_groups(self, groups: Sequence[Sequence[Batch]]) -> None:
        """The insert of a flush: ClickHouse only (and Kafka reads for a re-formed group), no commit."""
        for group in groups:
            await self._insert_group(group)

    def _inflight_done(self) -> bool:
        return self._inflight is not None and self._inflight.insert.done()

    async def _finish(self) -> None:
        """Wait for the flush in flight, if any, and commit its batches' done offsets."""
        async with self._flush_lock:
            await self._finish_locked()

    async def _finish_locked(self) -> None:
        inflight = self._inflight
        if inflight is None:
            return
        try:
            await inflight.insert
        finally:
            self._inflight = None
        inserted = time.perf_counter()
        batches = inflight.batches
        # If this fails the plans stay committed: whoever reads one next re-forms its batch, same token.
        await self._commit({self._tp(b): OffsetAndMetadata(b.last + 1, "") for b in batches})
        table = self.spec.name
        metrics.STAGE_SECONDS.labels(table, "plan").observe(inflight.plan_s)
        metrics.STAGE_SECONDS.labels(table, "done").observe(time.perf_counter() - inserted)
        log.debug(  # where a flush's time goes: LOG_LEVEL=DEBUG
            "flushed",
            extra={
                "table": table,
                "rows": sum(len(b.rows) for b in batches),
                "batches": len(batches),
                "oldest_s": round(time.time() - min(b.started for b in batches), 3),
                "plan_s": round(inflight.plan_s, 3),
                "insert_s": round(inserted - inflight.planned, 3),
                "done_s": round(time.perf_counter() - inserted, 3),
            },
        )

    def _observe_stages(self, batches: Sequence[Batch], now: float) -> None:
        """How long each batch's first record took to reach the sink, and then to be flushed."""
        for batch in batches:
            if batch.rows and batch.planned is None:
                metrics.STAGE_SECONDS.labels(self.spec.name, "delivered").observe(batch.taken - batch.started)
                metrics.STAGE_SECONDS.labels(self.spec.name, "batched").observe(max(0.0, now - batch.taken))

    def _tp(self, batch: Batch) -> TopicPartition:
        return TopicPartition(self.topic, batch.partition)

    def _in_clickhouse(self, batches: Sequence[Batch]) -> bool:
        """ClickHouse decodes the batches itself when it can (sinks/avro_block.py)."""
        newest = {self.codec.version}
        return self._avro and all(set(map(_VERSION, batch.rows)) <= newest for batch in batches)

    async def _insert_group(self, group: Sequence[Batch]) -> None:
        """Insert one planned group with its token in one call, retrying until ClickHouse takes it."""
        token = group[0].token(self.spec.name)
        batches = [*group, *await self._rest_of_group(group)]
        # After a failure the retries decode in Python, which also finds and skips a record
        # ClickHouse could not read, and ask for the stored identities again.
        in_clickhouse = self._in_clickhouse(batches)
        decoded: dict[int, list[tuple[int, Record]]] | None = None
        backoff = 0.2
        started = time.monotonic()
        while True:
            try:
                if not any(b.rows for b in batches):
                    inserted: dict[int, int] = {}
                elif in_clickhouse:
                    inserted = await self._insert_avro(batches, token)
                else:
                    if decoded is None:
                        decoded = {b.partition: self._decode(b) for b in batches}
                    inserted = await self._insert_decoded(decoded, token)
                break
            except Exception as exc:  # ClickHouse away or failing: keep the batches, back off, retry
                metrics.INSERT_FAILURES.labels(self.spec.name).inc()
                log.warning(
                    "insert failed, retrying",
                    extra={
                        "table": self.spec.name,
                        "rows": sum(len(b.rows) for b in batches),
                        "decoder": "clickhouse" if in_clickhouse else "python",
                        "error": repr(exc)[:500],
                        "retry_s": backoff,
                    },
                )
                in_clickhouse = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        elapsed = time.monotonic() - started
        for batch in group:  # the rest of a re-formed group is counted by its own partitions' owners
            count = inserted.get(batch.partition, 0)
            taken = len(batch.rows) if decoded is None else len(decoded.get(batch.partition, ()))
            self.inserted += count
            self._observe(batch, count, max(0, taken - count), elapsed)

    async def _rest_of_group(self, group: Sequence[Batch]) -> list[Batch]:
        """For a batch re-formed after a crash that was planned with others: the others, read from Kafka.

        The same group makes the same insert with the same token, whoever owns those partitions
        now: ClickHouse keeps one, and stores in the aggregates what an interrupted attempt left out.
        """
        if len(group) != 1 or group[0].planned is None or len(group[0].group) < 2:
            return []
        spans = {p: (first, last) for p, first, last in group[0].group if p != group[0].partition}
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id=sink_client(self.spec.name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await reader.start()
        light_records(reader)
        try:
            tps = {TopicPartition(self.topic, p): span for p, span in spans.items()}
            reader.assign(list(tps))
            for tp, (first, _) in tps.items():
                reader.seek(tp, first)
            batches = {p: Batch(p, planned=span) for p, span in spans.items()}
            pending = set(tps)
            while pending:
                fetched = await reader.getmany(*pending, timeout_ms=POLL_TIMEOUT_MS)
                for tp, messages in fetched.items():
                    for message in messages:
                        if message.offset <= tps[tp][1]:
                            self._add(batches[tp.partition], message)
                for tp in list(pending):
                    if await reader.position(tp) > tps[tp][1]:
                        pending.discard(tp)
            return list(batches.values())
        finally:
            await shutdown.close(reader.stop(), f"sink {self.spec.name} group reader")

    def _add(self, batch: Batch, message: Any) -> None:
        try:
            version = self._version(message.headers)
        except SchemaError as exc:  # our own topics: should not happen; never silently
            self._undecodable(batch.partition, message.offset, exc)
        else:
            if version is not None:  # None: a control record, takes an offset, adds no row
                batch.add(message.offset, message.value, version, message.timestamp / 1000)

    def _observe(self, batch: Batch, inserted: int, filtered: int, insert_s: float) -> None:
        """One batch in ClickHouse: a handful of metric updates, whatever its size."""
        table = self.spec.name
        metrics.RECORDS.labels(table, "inserted").inc(inserted)
        metrics.RECORDS.labels(table, "filtered").inc(filtered)
        if batch.rows:
            metrics.BATCH_ROWS.labels(table).observe(len(batch.rows))
            # `started` is wall-clock time (the first record's Kafka timestamp at the latest).
            metrics.BATCH_AGE.labels(table).observe(max(0.0, time.time() - batch.started))
            metrics.INSERT_SECONDS.labels(table).observe(insert_s)

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> bool:
        """Commit, or say the group moved on: a partition may already be another member's."""
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning(
                "commit refused during a rebalance",
                extra={
                    "table": self.spec.name,
                    "offsets": {tp.partition: o.offset for tp, o in offsets.items()},
                    "error": str(exc),
                },
            )
            return False
        return True

    def _rewind(self, tp: TopicPartition, offset: int) -> None:
        """Take a partition again from `offset`, if it is still ours (if not, its next owner will)."""
        self.batches.pop(tp.partition, None)
        if tp in self.consumer.assignment() and tp.partition in self.ready:
            self._sought(tp, offset)
        else:
            self.ready.discard(tp.partition)

    async def _insert_avro(self, batches: Sequence[Batch], token: str) -> dict[int, int]:
        """Insert the group as one Avro container, less the records already stored (by identity)."""
        kept = {b.partition: b.rows for b in batches}
        if self._identity_of is not None:
            read = self._identity_of
            heads = {b.partition: [(o, read(v)) for o, v, _ in b.rows] for b in batches}
            stored = await self._stored([record for records in heads.values() for record in records])
            for partition, records in new_group_rows(self.spec, heads, stored).items():
                if len(records) < len(kept[partition]):
                    keep = {offset for offset, _ in records}
                    kept[partition] = [row for row in kept[partition] if row[0] in keep]
        blocks = [(p, rows) for p, rows in kept.items() if rows]
        if blocks:
            block = container_blocks(self.avro_header, blocks)
            await self.clickhouse.insert_avro(self.spec.name, block, self.spec.insert_columns, token)
        return {partition: len(rows) for partition, rows in kept.items()}

    async def _insert_decoded(
        self, decoded: Mapping[int, list[tuple[int, Record]]], token: str
    ) -> dict[int, int]:
        """Insert the records not stored yet, the whole group's in one insert (one identity query)."""
        stored = await self._stored([record for records in decoded.values() for record in records])
        kept = new_group_rows(self.spec, decoded, stored)
        values: list[list[Any]] = []
        for partition, records in kept.items():
            if records:
                columns = self.spec.column_values(partition, records)
                if values:
                    for column, more in zip(values, columns, strict=True):
                        column.extend(more)
                else:
                    values = columns
        if values:
            await self.clickhouse.insert(self.spec.name, values, self.spec.insert_columns, token)
        return {partition: len(records) for partition, records in kept.items()}

    async def _stored(self, records: Sequence[tuple[int, Record]]) -> list[tuple[Any, ...]]:
        if self.spec.identity_sql is None or not records:
            return []
        params = self.spec.identity_parameters([record for _, record in records])
        return await self.clickhouse.query(self.spec.identity_sql, params)

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Re-form the batch a crash interrupted, from the plan in the committed metadata.

        The consumer may fetch a new partition while this runs; until the plan is read its
        records are not taken, and the partition is then sought back to the committed offset.
        """
        await self._finish()  # (a revoke has already waited for it)
        for tp in partitions:
            self.ready.discard(tp.partition)
        if not partitions:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.group, partitions=list(partitions))
        finally:
            await admin.close()
        for tp in partitions:
            meta = committed.get(tp)
            plan = parse_plan(meta.metadata if meta else None)
            self.batches.pop(tp.partition, None)
            if plan is not None and meta is not None and plan[0] == meta.offset:
                self.batches[tp.partition] = Batch(
                    tp.partition, planned=plan, group=parse_group(meta.metadata)
                )
                log.info(
                    "re-forming an interrupted batch",
                    extra={"table": self.spec.name, "partition": tp.partition, "plan": plan},
                )
            if meta is not None and meta.offset >= 0:
                self._sought(tp, meta.offset)
            else:
                # Looked up first, then sought and marked ready in one step: while an await of a
                # seek_to_beginning ran, the run loop could fetch from the new position and drop
                # the records (partition not ready) with the position already past them.
                start = (await self.consumer.beginning_offsets([tp]))[tp]
                self._sought(tp, start)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # The flush in flight is done while the partitions are still ours; re-formed batches not
        # yet complete stay planned in Kafka for the next owner.
        await self.writer._finish()
        due = [
            tp.partition
            for tp in revoked
            if tp.partition in self.writer.ready
            and (batch := self.writer.batches.get(tp.partition)) is not None
            and batch.planned is None
        ]
        if due:
            await self.writer.flush_many(due)
        for tp in revoked:
            self.writer.batches.pop(tp.partition, None)
            self.writer.ready.discard(tp.partition)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.writer.on_assigned(assigned)
