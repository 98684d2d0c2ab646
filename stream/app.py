"""The Faust application: tables, the attribution agent and the clock, wired around stream.decide.

One agent reads two co-partitioned topics (same partition count, both keyed by
click id): `clicks.raw` and `postbacks.raw`. Faust assigns partition N of both to
the same worker, so a postback meets its click, its dedup state and its held
siblings in one place, processed one event at a time. Ingest already keys both
sources by click id, so no repartition topic is needed. The worker's clock writes
its ticks into `clicks.raw` itself (schema `stream_tick`), so a tick is read after
every click appended before it (stream/decide.py "Order"). A held postback whose click
never came but whose device is known goes on to view-through: a second agent on
`impressions.raw` (stream/view_through.py).

Tables (RocksDB via rocksdict by default, changelog-backed):
  click-state    click id -> the click, its conversions' dedup decisions, postbacks held for it
  pending-index  click id -> (partition, due time) for states holding postbacks, so the clock
                 finds them without scanning every click

Guarantees. Faust runs at-least-once and flushes its producer before committing
offsets; that flush waits for every table write's changelog record to be acknowledged
(stream/changelog_buffer.py: Faust's own gives up early), and the commit goes no further
than the agent finished, with no record skipped before it (stream/continuity.py,
stream/commit_limit.py: Faust's own bookkeeping can skip one). On the hot path, decisions
keep what they emitted, so a replay re-emits it, and no decision depends on the order
in which the two topics are read (stream/decide.py). On the two rare paths that consume
held postbacks (their click arrives; their grace period ends) the agent waits for the
outputs' acknowledgements before it writes the state: a crash in between repeats
outputs (idempotent by request id / conversion version downstream) but never loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError, KafkaError
from faust.types import TP

from postbacks.catalog import Catalog
from postbacks.groups import stream_client, stream_group
from postbacks.murmur2 import KeyPartitioner
from postbacks.settings import Settings
from postbacks.topics import Topics, topic_partitions
from schemas import DEAD_LETTER, FX_RATE, STREAM_TICK, Codec, SchemaError, schema_name
from stream import metrics
from stream.batch import BatchDecider, Source
from stream.changelog_buffer import DrainingProducerBuffer
from stream.continuity import REWIND_RETRY_S, Continuity
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, VIEW_KIND, Decider, Emit
from stream.faust_app import StreamFaustApp
from stream.produce import BatchSender, Outgoing, SentBatch
from stream.rules.fx import load_rates
from stream.source_batches import SourceBatch
from stream.state import ClickState, StateCodec
from stream.table_io import TableIO
from stream.view_through import ViewThrough

log = logging.getLogger(__name__)


def _bytes_topic(app: faust.App, *names: str) -> faust.TopicT:
    """A topic of raw bytes: records are Avro, encoded and decoded by schemas.Codec, not by Faust."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


class StreamApp:
    """Builds the Faust app for one worker process from settings and configuration."""

    def __init__(self, settings: Settings, catalog: Catalog, source_policies: dict[str, str]) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.rates: MutableMapping[str, Decimal] = load_rates(settings.fx_rates_file)
        self.decider = Decider(settings, catalog, source_policies, self.rates)
        self._state_codec = StateCodec()
        self._ticks = Codec(STREAM_TICK, millis=True)
        self._dead = Codec(DEAD_LETTER, millis=True)
        self._last_tick_sent: dict[int, float] = {}
        self.processed = {"clicks": 0, "postbacks": 0, "ticks": 0, "dead_letter": 0, "rewound": 0}
        self.handled = 0  # source records the agent has been through, processed or not
        self.continuity = Continuity()
        self._starts: dict[TP, int] | None = None  # per assignment: where each source partition begins
        self._assignments = 0

        self.app = app = StreamFaustApp(
            id=stream_group(settings.topic_prefix),
            broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
            store=f"{settings.stream_store}://",
            datadir=str(self.datadir),
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication_factor,
            processing_guarantee="at_least_once",
            # The memory store iterates standby partitions too; the clock must only see its own.
            table_standby_replicas=1 if settings.stream_store == "rocksdb" else 0,
            broker_commit_interval=settings.stream_commit_interval_s,
            broker_session_timeout=settings.stream_session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.stream_session_timeout_s / 3),
            broker_rebalance_timeout=max(settings.stream_session_timeout_s, 10.0),
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_partitioner=KeyPartitioner(),  # murmur2, as aiokafka's default (postbacks/murmur2.py)
            producer_linger_ms=settings.kafka_linger_ms,
            # A fetch's outputs and changelog records go as one batch per partition
            # (stream/produce.py); aiokafka's 16 KiB default cut them into many round trips.
            producer_max_batch_size=512 * 1024,
            # The most records one fetch returns: one batch of the agent (stream/source_batches.py).
            broker_max_poll_records=settings.stream_batch_max,
            broker_client_id=self.client_id,
            consumer_group_instance_id=self.client_id if settings.stream_static_membership else None,
            web_enabled=False,
            autodiscover=False,
            topic_allow_declare=True,
        )
        # Subscribed through the conductor like an agent's topic; its records reach the agent
        # a fetch at a time through `batches` (stream/source_batches.py), not record by record.
        self.source = _bytes_topic(app, self.topics.clicks_raw, self.topics.postbacks_raw)
        app.topics.add(self.source)
        impressions = self.topics.impressions_raw  # the view-through agent's source (stream/view_through.py)
        self._source_names = frozenset((self.topics.clicks_raw, self.topics.postbacks_raw, impressions))
        self.outputs = {
            CONVERSION_KIND: _bytes_topic(app, self.topics.conversions_attributed),
            REJECTED_KIND: _bytes_topic(app, self.topics.postbacks_rejected),
            DUPLICATE_KIND: _bytes_topic(app, self.topics.postbacks_duplicates),
            VIEW_KIND: _bytes_topic(app, impressions),
        }
        self._output_names = {kind: topic.get_topic_name() for kind, topic in self.outputs.items()}
        self.ticks = _bytes_topic(app, self.topics.clicks_raw)  # in-band: ordered with the clicks
        self.dead_letter = _bytes_topic(app, self.topics.dead_letter)
        ttl_s = self.decider.max_ttl_ms() // 1000
        self.states = app.Table(
            "click-state",
            partitions=settings.topic_partitions,
            key_type=bytes,
            value_type=bytes,  # bytes keys and values: the raw codec
            # Physical expiry; logical expiry is the state's own expires_at, checked on read.
            options={"ttl": ttl_s} if settings.stream_store == "rocksdb" else None,
            extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": str(ttl_s * 1000)},
        )
        self.pending_index = app.Table(
            "pending-index", partitions=settings.topic_partitions, key_type=bytes, value_type=bytes
        )
        self._changelog_configs = {
            self.states.changelog_topic.get_topic_name(): {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(ttl_s * 1000),
            },
            self.pending_index.changelog_topic.get_topic_name(): {"cleanup.policy": "compact"},
        }
        self.batcher = BatchDecider(self.decider, settings.stream_decoded_states)
        self._states_io = TableIO(self.states)
        self._index_io = TableIO(self.pending_index)
        # One event a fetch of the sources: the consumer hands them over (stream/source_batches.py).
        self.batches = app.channel(maxsize=2)
        self._idle = asyncio.Event()
        self._idle.set()
        self._batch_sender: BatchSender | None = None
        app.source_topics = self._source_names
        app.fetch_max_wait_ms = settings.stream_fetch_max_wait_ms
        app.on_source_batch = self._hand_over
        app.source_batch_idle = self._batch_idle
        self.agent = app.agent(self.batches, name="attribute")(self._attribute)
        self.view = ViewThrough(self, _bytes_topic(app, impressions), self._output_names)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.commit_limit = self._commit_limit
        app.timer(settings.stream_tick_interval_s, name="clock")(self._clock)
        app.timer(REWIND_RETRY_S / 2, name="catch-up")(self._catch_up)
        app.task(self._follow_fx_rates)
        app.timer(30.0, name="progress")(self._log_progress)

    def changelog_topics(self) -> dict[str, dict[str, str]]:
        """The tables' changelog topics and their configs, to create before Faust starts.

        Faust creates them itself at start, then reads their partition counts at once; Apache
        Kafka spreads a new topic through its metadata a moment after CreateTopics returns, so
        that read could find no partitions and crash the agent (PartitionsMismatch: seen in the
        demo on Kafka). Created and described first (postbacks.topics.ensure_topics), they exist.
        """
        return {**self._changelog_configs, **self.view.changelog_configs}

    @property
    def client_id(self) -> str:
        """Names this worker in consumer-group tooling (and lets a supervisor evict it after a crash)."""
        return stream_client(self.settings.stream_worker_name)

    @property
    def datadir(self) -> Path:
        return self.settings.data_dir.resolve() / "stream" / self.settings.stream_worker_name

    # -- the agent -----------------------------------------------------------------------------

    async def _attribute(self, batches: faust.StreamT[SourceBatch]) -> None:
        """Decide each fetch of the sources as one batch (stream/batch.py).

        The consumer hands the source records over a fetch at a time, one event on this
        agent's channel each (stream/source_batches.py); what may be committed is what
        `continuity` says the agent finished, after Faust flushed the producer
        (stream/changelog_buffer.py).
        """
        async for batch in batches:
            self._idle.clear()
            try:
                await self._process(batch)
            except Exception as exc:
                # Not a poison record (those go to the dead-letter topic): a fault of ours or of
                # Kafka's. Faust would restart the agent and go on, and a later batch's progress
                # would let the commit pass this batch's records: stop the worker instead; it
                # resumes from the committed offsets.
                log.exception("batch failed: stopping the worker", extra={"records": len(batch)})
                await self.app.crash(exc)
                raise
            finally:
                self.handled += len(batch)
                self._idle.set()

    async def _hand_over(self, batch: SourceBatch) -> None:
        """From the consumer's fetch loop: each agent's partitions onto its channel (the fetch waits if full).

        Clicks and postbacks go to this agent, impressions.raw to the view-through agent.
        """
        view_topic = self.view.topic_name
        mine = [(tp, records) for tp, records in batch.partitions if tp.topic != view_topic]
        theirs = [(tp, records) for tp, records in batch.partitions if tp.topic == view_topic]
        if mine:
            await self.batches.send(value=SourceBatch(batch.generation, mine))
        if theirs:
            await self.view.batches.send(value=SourceBatch(batch.generation, theirs))

    async def _batch_idle(self) -> None:
        """For Faust's wait before a rebalance: the batches in the agents' hands are finished."""
        await self._idle.wait()
        await self.view.idle.wait()

    async def _process(self, batch: SourceBatch) -> None:
        """One fetch: admit (stream/continuity.py), decide, send the outputs, write the states."""
        generation = batch.generation
        if generation != self.app.consumer_generation_id:
            return  # fetched before a rebalance: Faust seeks to the committed offsets, read again
        admitted: list[Any] = []
        for tp, records in batch.partitions:
            admitted += await self._admit(tp, records)
        if not admitted:
            return
        sources = [
            Source(rec.partition, rec.offset, schema_name(rec.headers), rec.value, rec.headers)
            for rec in admitted
        ]
        result = self.batcher.run(sources, self._states_io, self._index_io)
        for name, n in result.counts.items():
            self.processed[name] += n
        for source, exc in result.dead:
            await self._to_dead_letter(admitted[sources.index(source)], exc)
        producer = self.app.producer
        buffer = producer.buffer
        assert isinstance(buffer, DrainingProducerBuffer)
        outputs = await self._send(result.emits, buffer)
        if result.wait_for_outputs:
            # Held postbacks were decided: their outputs are acknowledged before any state says so.
            await asyncio.gather(*(sent.delivery for sent in outputs))
            if self.app.consumer_generation_id != generation:
                return  # the partitions may be another worker's now: write nothing
        changelog = self._states_io.apply(result.states) + self._index_io.apply(result.index)
        sent = await self._sender().send(changelog)
        self._states_io.track(sent, buffer)
        self._index_io.track(sent, buffer)
        if self.app.consumer_generation_id != generation:
            return  # a rebalance came while we sent: its records are read again
        last: dict[tuple[str, int], int] = {}
        for record in admitted:
            last[(record.topic, record.partition)] = record.offset
        for (topic, partition), offset in last.items():
            self.continuity.done(topic, partition, offset)

    def _sender(self) -> BatchSender:
        """Batches to the app's producer (started with the worker, so not at construction)."""
        if self._batch_sender is None:
            self._batch_sender = BatchSender(self.app.producer._ensure_producer())  # type: ignore[attr-defined]
        return self._batch_sender

    def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.continuity.forget()
        self._starts = None
        self._assignments += 1

    def _commit_limit(self, tp: Any) -> int | None:
        """Faust commits a source partition no further than the agent finished (stream/commit_limit.py)."""
        if tp.topic not in self._source_names:
            return None
        return self.continuity.commit_limit(tp.topic, tp.partition)

    async def _start_offset(self, tp: TP) -> int | None:
        """Where a newly assigned partition begins: the group's committed offset, else the log's first.

        Asked of the broker, once per assignment for all our source partitions: Faust's
        own view of the committed offsets is filled in only after the first records of an
        assignment may already have been handed over.
        """
        starts = self._starts
        if starts is None:
            assignment = self._assignments
            assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self._source_names]
            starts = await self._committed_offsets(assigned)
            uncommitted = [tp for tp in assigned if tp not in starts]
            if uncommitted:  # the group reads these from the log's first record
                starts.update(await self.app.consumer.earliest_offsets(*uncommitted))
            if assignment == self._assignments:  # still the assignment we asked about
                self._starts = starts
        return starts.get(tp)

    async def _committed_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        """The group's committed offsets, as the broker has them (partitions never committed left out)."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, client_id=self.client_id
        )
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                self.app.conf.id, partitions=[TopicPartition(tp.topic, tp.partition) for tp in partitions]
            )
        finally:
            await admin.close()
        return {TP(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def _catch_up(self) -> None:
        """Seek again a partition with unread records that makes no progress (stream/continuity.py).

        That is a rewind that did not take, or a hole no later record reveals. If the log
        no longer holds the hole (retention deleted it before it was read), rewinding
        cannot bring it back: say so loudly and go on from the log's first record.
        """
        consumer = self.app.consumer
        if not self.app.flow_control.is_active():
            return  # a rebalance or recovery is under way; Faust seeks the partitions itself
        assigned = [tp for tp in consumer.assignment() if tp.topic in self._source_names]
        if not assigned:
            return
        try:
            ends = await consumer.highwaters(*assigned)
            partitions = [
                (
                    tp.topic,
                    tp.partition,
                    None if self.continuity.knows(tp.topic, tp.partition) else await self._start_offset(tp),
                    ends.get(tp),
                )
                for tp in assigned
            ]
        except KafkaError as exc:  # a timer must not crash the worker: ask again next time
            log.warning("source positions unknown", extra={"error": repr(exc)})
            return
        for topic, partition, missing in self.continuity.stalled(partitions, time.monotonic()):
            tp = TP(topic, partition)
            try:
                first = (await consumer.earliest_offsets(tp)).get(tp)
            except KafkaError as exc:  # seek anyway, ask next time
                log.warning("log start unknown", extra={"topic": topic, "error": repr(exc)})
                first = None
            if first is not None and first > missing:
                log.error(
                    "source records deleted before they were read: skipped",
                    extra={
                        "topic": topic,
                        "partition": partition,
                        "from_offset": missing,
                        "to_offset": first,
                    },
                )
                self.continuity.skip_to(topic, partition, first)
                continue
            log.warning(
                "source partition stalled with unread records: rewinding it",
                extra={"topic": topic, "partition": partition, "missing_offset": missing},
            )
            await self._seek(tp, missing)

    async def _seek(self, tp: TP, offset: int) -> None:
        """Seek on the consumer's own thread, unless a rebalance took the partition away meanwhile.

        Faust's `consumer.seek` runs on the caller's thread and changes aiokafka's fetcher
        under its feet: the fetch loop then crashed with a KeyError in `fetched_records`
        (seen in `postbacks bench stream` once this worker rewound a partition under load).
        `seek_wait` runs the seek on the consumer's thread and waits for it to land.
        A revoked partition needs no rewind: its next owner starts at the committed offset,
        which is never past a record this worker has not finished (stream/commit_limit.py).
        Apache Kafka's rebalances land between the awaits of the catch-up timer; the seek of
        a revoked partition raised IllegalStateError and crashed the worker.
        """
        try:
            await self.app.consumer.seek_wait({tp: offset})
        except IllegalStateError:
            log.info(
                "partition revoked before its rewind: left to its next owner",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
            )

    async def _admit(self, tp: TP, records: list[Any]) -> list[Any]:
        """A partition's records up to the first one that comes after a hole (stream/continuity.py).

        The rest are neither processed nor marked done (the commit cannot pass the hole):
        the partition is rewound to the hole, and they are read again after it.
        """
        topic, partition = tp.topic, tp.partition
        start = None
        if not self.continuity.knows(topic, partition):
            start = await self._start_offset(tp)
        now = time.monotonic()
        admit = self.continuity.admit
        for i, record in enumerate(records):
            verdict = admit(topic, partition, record.offset, start, now)
            missing = verdict.rewind_to
            if missing is None:
                continue
            self.processed["rewound"] += len(records) - i
            if verdict.seek:
                log.warning(
                    "source record missing: rewinding its partition",
                    extra={
                        "topic": topic,
                        "partition": partition,
                        "missing_offset": missing,
                        "got_offset": record.offset,
                    },
                )
                await self._seek(tp, missing)
            return records[:i]
        return records

    def _load(self, key: bytes) -> ClickState | None:
        raw = self.states.get(key)
        return None if raw is None else self._state_codec.load_state(raw)

    def _index_entries(self) -> Iterable[tuple[bytes, Any]]:
        return [(key, self._state_codec.load_index(raw)) for key, raw in list(self.pending_index.items())]

    # -- the clock -------------------------------------------------------------------------------

    async def _clock(self) -> None:
        """Append a tick to each of our clicks partitions that holds a postback now due.

        Ticks are ordinary events in the clicks log, so the decisions they trigger run in
        order with the partition's clicks and are replayed in the same order.
        """
        now = time.time()
        entries = list(self._index_entries())
        metrics.HELD.set(len(entries))
        due_partitions = {entry["partition"] for _, entry in entries if entry["due_at"] <= now * 1000}
        for partition in due_partitions:
            if now - self._last_tick_sent.get(partition, 0.0) < self.settings.stream_tick_interval_s:
                continue
            self._last_tick_sent[partition] = now
            await self.ticks.send(
                key=b"tick",
                value=self._ticks.encode({"at": int(now * 1000)}),
                partition=partition,
                headers=self._ticks.headers,
            )

    # -- outputs ---------------------------------------------------------------------------------

    async def _send(self, emits: list[Emit], buffer: DrainingProducerBuffer) -> list[SentBatch]:
        """Hand the outputs to the producer a partition batch at a time (stream/produce.py).

        Straight to aiokafka's producer, not through `Topic.send`: the bytes are final and
        the topic's serializers, sensors and per-message callbacks would only add work per
        record. Nothing is weakened: `buffer` holds the commit until every batch is
        acknowledged (stream/changelog_buffer.py), and `_process` awaits the acks where it must.
        """
        metrics.count_out(emits)
        names, codecs = self._output_names, self.decider.codecs
        sent = await self._sender().send(
            Outgoing(names[e.kind], e.key, e.value, codecs[e.kind].headers_for(e.schema_version))
            for e in emits
        )
        for batch in sent:
            buffer.track(batch.delivery)
        return sent

    async def _to_dead_letter(self, message: Any, exc: Exception) -> None:
        """A poison message is kept with its error; the worker goes on instead of crash-looping."""
        self.processed["dead_letter"] += 1
        log.error(
            "undecodable message sent to dead letter",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "error": str(exc),
            },
        )
        record = {
            "source_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key,
            "value": message.value or b"",
            "error": str(exc)[:2000],
            "failed_at": int(time.time() * 1000),
        }
        future = await self.dead_letter.send(
            key=message.key, value=self._dead.encode(record), headers=self._dead.headers
        )
        await future

    # -- currency rates ----------------------------------------------------------------------------

    async def _follow_fx_rates(self) -> None:
        """Every worker reads all of fx.rates (not as a group member) and applies each rate as it comes."""
        codec = Codec(FX_RATE)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        while True:
            try:
                await consumer.start()
                break
            except Exception as exc:  # broker not up yet: keep the shipped defaults, retry
                log.warning("fx.rates not readable yet", extra={"error": repr(exc)})
                await asyncio.sleep(2.0)
        try:
            consumer.assign(await topic_partitions(consumer, self.topics.fx_rates))
            async for message in consumer:
                try:
                    rate = codec.decode(message.value, message.headers)
                    self.rates[str(rate["currency"]).upper()] = Decimal(rate["usd_per_unit"])
                except (SchemaError, ArithmeticError, KeyError) as exc:
                    log.error("bad fx rate ignored", extra={"offset": message.offset, "error": str(exc)})
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _log_progress(self) -> None:
        log.info("stream progress", extra=dict(self.processed))
