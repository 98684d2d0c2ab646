"""`postbacks outbound`: pass attributed conversions on to the publishers that brought the clicks.

An aiokafka consumer (group `<prefix>postbacks-outbound`) reads `conversions.attributed`;
each conversion version whose publisher is configured and wants its status becomes one
delivery, handed to that publisher's `Destination` (its own queue, connections and pause
switch, outbound.delivery). The consumer never waits for a destination.

What is committed: per partition, only up to the oldest offset whose delivery is not yet
decided (delivered or dead-lettered, and recorded), so a crash loses nothing; what is
re-read after it is recognised from the delivery states this worker reloads from the
compacted `outbound.deliveries` topic when it gets a partition (outbound.state).

Why aiokafka and not a Faust agent: like the sink, this stage needs per-partition control
of what is committed and no tables Faust would keep for it (docs/clickhouse.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from outbound import metrics
from outbound.config import Publisher, load_publishers
from outbound.delivery import Destination
from outbound.job import Job
from outbound.plan import plan
from outbound.progress import PartitionProgress
from outbound.records import Recorder, load_states
from outbound.state import FINAL, resume
from postbacks import metrics as postbacks_metrics
from postbacks import shutdown
from postbacks.conventions import ConfigError
from postbacks.groups import outbound_client, outbound_group
from postbacks.metrics import GroupLag
from postbacks.murmur2 import KeyPartitioner
from postbacks.partitions import ReadyPartitions
from postbacks.settings import Settings
from postbacks.topics import DELIVERY_STATE_RETENTION_MS, Topics
from schemas import CONVERSION, Codec, SchemaError

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 30.0
PRUNE_INTERVAL_S = 600.0
RETENTION_S = DELIVERY_STATE_RETENTION_MS / 1000


def check_ages(settings: Settings, publishers: Mapping[str, Publisher]) -> None:
    """A delivery's recorded state must outlive every re-read of its conversion (docs/outbound.md: limits)."""
    ages = [("OUTBOUND_MAX_AGE_S", settings.outbound_max_age_s)]
    ages += [(f"publishers.{pid}.max_age_s", p.max_age_s) for pid, p in publishers.items() if p.max_age_s]
    for name, age in ages:
        if age > RETENTION_S / 2:
            raise ConfigError(f"{name}: at most {RETENTION_S / 2:.0f} s (half the delivery-state retention)")


class OutboundWorker:
    def __init__(self, settings: Settings, publishers: Mapping[str, Publisher]) -> None:
        self.settings = settings
        self.publishers = dict(publishers)
        self.topics = Topics(settings.topic_prefix)
        self.topic = self.topics.conversions_attributed
        self.group = outbound_group(settings.topic_prefix)
        self.codec = Codec(CONVERSION, millis=True)
        client_id = outbound_client(settings.outbound_worker_name)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.kafka_linger_ms,
            compression_type=settings.kafka_compression,
            partitioner=KeyPartitioner(),  # murmur2, as aiokafka's default (postbacks/murmur2.py)
        )
        self.recorder = Recorder(self.producer, self.topics)
        self.destinations = {
            pid: Destination(publisher, settings, self.recorder, self._decided)
            for pid, publisher in self.publishers.items()
        }
        # How long a stop or a rebalance waits for requests under way to finish and be recorded.
        self.grace_s = 30.0 + max(
            [settings.outbound_timeout_s] + [p.timeout_s for p in self.publishers.values() if p.timeout_s]
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.group,
            client_id=client_id,
            # Static member (KIP-345): a worker restarted after a crash takes its partitions back
            # at once instead of waiting for its old session to expire.
            group_instance_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=3_600_000,  # fetching never waits on a destination
            # A rebalance waits for the requests under way (on_revoked): the group must wait as long.
            rebalance_timeout_ms=int((self.grace_s + 10) * 1000),
        )
        self.jobs: dict[str, Job] = {}  # undecided deliveries by idempotency key
        self.progress: dict[int, PartitionProgress] = {}
        self.committed: dict[int, int] = {}
        # Partitions whose delivery states are loaded, and their last seeks.
        self.ready = ReadyPartitions()
        self.undecodable = 0

    # -- main loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        runners = [asyncio.create_task(d.run()) for d in self.destinations.values()]
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        await self.consumer.start()
        log.info(
            "outbound worker started",
            extra={"publishers": sorted(self.publishers), "group": self.group, "topic": self.topic},
        )
        try:
            now = time.monotonic()
            next_commit, next_stats, next_prune = now, now + STATS_INTERVAL_S, now + PRUNE_INTERVAL_S
            while not stop.is_set():
                fetched = await self.consumer.getmany(timeout_ms=200, max_records=1000)
                seeks = self.ready.snapshot()  # as of this fetch; a rebalance may run during any await below
                for tp, messages in fetched.items():
                    for message in messages:
                        if not self.ready.current(tp.partition, seeks.get(tp.partition)):
                            break
                        self._take(tp.partition, message)
                now = time.monotonic()
                if now >= next_commit:
                    await self._commit(list(self.ready))
                    next_commit = now + self.settings.outbound_commit_interval_s
                if now >= next_stats:
                    self._log_stats()
                    next_stats = now + STATS_INTERVAL_S
                if now >= next_prune:
                    self._prune()
                    next_prune = now + PRUNE_INTERVAL_S
        finally:
            await asyncio.gather(*(d.close(self.grace_s) for d in self.destinations.values()))
            await asyncio.gather(*runners, return_exceptions=True)
            await self._commit(list(self.ready))
            self._log_stats("outbound worker stopped")
            await shutdown.close(self.consumer.stop(), "outbound consumer")
            await shutdown.close(self.producer.stop(), "outbound producer")

    def _take(self, partition: int, message: Any) -> None:
        """One conversion version: the delivery it needs, unless recorded as decided already."""
        progress = self.progress[partition]
        try:
            conversion = self.codec.decode(message.value, message.headers)
        except SchemaError as exc:  # our own topic: should not happen; never silently
            self.undecodable += 1
            log.error(
                "undecodable conversion skipped",
                extra={"partition": partition, "offset": message.offset, "error": str(exc)},
            )
            progress.seen(message.offset, 0)
            return
        delivery = plan(conversion, self.publishers)
        if delivery is None:
            progress.seen(message.offset, 0)
            return
        known = self.jobs.get(delivery.key)
        if known is not None:  # the stream re-emitted a version still under way: wait on the same one
            known.offsets.append(message.offset)
            progress.seen(message.offset, 1)
            return
        state = self.recorder.states.get(partition, {}).get(delivery.key)
        action = resume(state, time.time())
        if action is None:  # decided before (a re-read after a restart, or a stream replay)
            progress.seen(message.offset, 0)
            return
        destination = self.destinations[delivery.publisher.publisher_id]
        deadline = conversion["received_at"] / 1000 + destination.policy.max_age_s
        job = Job.for_conversion(
            conversion, delivery.key, delivery.request, partition, message.offset, deadline, progress
        )
        job.attempts, job.due = action.attempts, action.due
        job.last_status = state.http_status if state is not None else None
        self.jobs[delivery.key] = job
        progress.seen(message.offset, 1)
        destination.submit(job, action.uncertain)

    def _decided(self, job: Job) -> None:
        """Called once a delivery's final state is recorded: its offsets may now be committed."""
        if self.jobs.get(job.key) is job:
            del self.jobs[job.key]
        if job.progress is not None:
            for offset in job.offsets:
                job.progress.done(offset)

    async def _commit(self, partitions: Iterable[int]) -> None:
        offsets = {}
        for partition in partitions:
            progress = self.progress.get(partition)
            offset = progress.committable() if progress is not None else None
            if offset is not None and offset > self.committed.get(partition, -1):
                offsets[TopicPartition(self.topic, partition)] = OffsetAndMetadata(offset, "")
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit refused during a rebalance", extra={"error": str(exc)})
            return
        for tp, meta in offsets.items():
            self.committed[tp.partition] = meta.offset

    def _prune(self) -> None:
        """Forget decided deliveries older than the state topic keeps them (a restart would too)."""
        horizon = time.time() - RETENTION_S
        for states in self.recorder.states.values():
            old = [k for k, s in states.items() if s.state in FINAL and s.updated_at < horizon]
            for key in old:
                del states[key]

    def _log_stats(self, message: str = "outbound progress") -> None:
        log.info(
            message,
            extra={
                "destinations": {
                    name: {
                        **d.counts,
                        "waiting": d.waiting,
                        "in_flight": d.in_flight,
                        "paused": d.breaker.paused,
                    }
                    for name, d in self.destinations.items()
                },
                "undecided": len(self.jobs),
                "undecodable": self.undecodable,
            },
        )

    # -- partitions --------------------------------------------------------------------------

    async def on_assigned(self, partitions: set[int]) -> None:
        """Load the partitions' delivery states, then read them from their committed offsets.

        Records the consumer fetches meanwhile are not taken (the partitions are not ready) and
        the positions moved past them, so each partition is sought to where it must start, and
        marked ready in the same step: with no await in between, no record fetched after the
        seek can be dropped as early.
        """
        for partition in partitions:
            self.ready.discard(partition)
        if not partitions:
            return
        ordered = sorted(partitions)
        tps = {p: TopicPartition(self.topic, p) for p in ordered}
        self.consumer.pause(*tps.values())  # no fetching while the states load
        states = await load_states(
            self.settings.kafka_bootstrap_servers, self.topics.outbound_deliveries, ordered
        )
        committed = await self._committed(ordered)
        starts: dict[int, int | None] = {}
        for partition, tp in tps.items():
            meta = committed.get(tp)
            starts[partition] = meta.offset if meta is not None and meta.offset >= 0 else None
        fresh = [tps[p] for p, start in starts.items() if start is None]
        beginnings = await self.consumer.beginning_offsets(fresh) if fresh else {}
        for partition, tp in tps.items():  # no await from here on
            start = starts[partition]
            self.consumer.seek(tp, beginnings[tp] if start is None else start)
            self.recorder.states[partition] = states[partition]
            self.progress[partition] = PartitionProgress(start)
            self.committed[partition] = -1 if start is None else start
            self.ready.sought(partition)
        self.consumer.resume(*tps.values())
        log.info(
            "outbound partitions ready",
            extra={
                "partitions": ordered,
                "committed": {p: self.committed[p] for p in ordered},
                "delivery_states": {p: len(states[p]) for p in ordered},
            },
        )

    async def on_revoked(self, partitions: set[int]) -> None:
        """Stop taking the partitions; let their requests under way finish and be recorded, so the
        next owner's reload sees them; commit what is decided."""
        if not partitions:
            return
        for partition in partitions:
            self.ready.discard(partition)
        under_way: list[asyncio.Task[None]] = []
        for destination in self.destinations.values():
            _, tasks = destination.forget(partitions)
            under_way += tasks
        if under_way:
            await asyncio.wait(under_way, timeout=self.grace_s)
        await self._commit(partitions)
        for key in [k for k, job in self.jobs.items() if job.partition in partitions]:
            del self.jobs[key]
        for partition in partitions:
            self.progress.pop(partition, None)
            self.committed.pop(partition, None)
            self.recorder.states.pop(partition, None)
        log.info("outbound partitions revoked", extra={"partitions": sorted(partitions)})

    async def _committed(self, partitions: list[int]) -> dict[TopicPartition, OffsetAndMetadata]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            found: dict[TopicPartition, OffsetAndMetadata] = await admin.list_consumer_group_offsets(
                self.group, partitions=[TopicPartition(self.topic, p) for p in partitions]
            )
        finally:
            await admin.close()
        return found


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: OutboundWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.on_revoked({tp.partition for tp in revoked if tp.topic == self.worker.topic})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned({tp.partition for tp in assigned if tp.topic == self.worker.topic})


def load(settings: Settings) -> dict[str, Publisher]:
    """The publishers of the sources file, checked (ConfigError names what is wrong)."""
    publishers = load_publishers(settings.effective_sources_file)
    check_ages(settings, publishers)
    return publishers


async def serve(settings: Settings, publishers: Mapping[str, Publisher]) -> None:
    # httpx logs every request with its full URL at INFO: publishers' URLs can hold their tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not publishers:
        log.warning(
            "no [publishers.<id>] in the sources file: conversions are read and nothing is sent",
            extra={"sources_file": str(settings.effective_sources_file)},
        )
    stop = asyncio.Event()
    shutdown.on_stop_signals(asyncio.get_running_loop(), stop.set, settings.shutdown_timeout_s, "outbound")
    worker = OutboundWorker(settings, publishers)
    postbacks_metrics.serve(metrics.REGISTRY, settings.metrics_host, settings.outbound_metrics_port)
    metrics.REGISTRY.register(metrics.Destinations(lambda: worker.destinations))
    lag = GroupLag(settings.kafka_bootstrap_servers, {worker.group: [worker.topic]})
    metrics.REGISTRY.register(lag.start())
    try:
        await worker.run(stop)
    finally:
        lag.stop()
