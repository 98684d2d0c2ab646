"""Faust's consumer, handing the stream's source records to the agent a whole fetch at a time.

Why. Faust delivers every record on its own: a Message object, a dispatch through the
conductor into each subscribed stream's queue, an Event, an iteration step of the
agent's stream and an acknowledgement, each with awaits. For the stream worker, which
does little per record once it decides in batches (stream/batch.py), that machinery
was the floor: a Faust agent that only iterates the source records runs at a fraction
of a raw aiokafka consumer's rate (`postbacks bench stream`, "Faust floor").

So for the source topics (`clicks.raw`, `postbacks.raw`) this consumer's fetch loop
hands what one fetch returned, aiokafka's records grouped by partition, to the app in
one call (`on_batch`); the app puts it on the agent's channel as one event. A standby
partition's changelog records, once recovery is over, are written to the local store a
fetch at a time as well (stream/standby_apply.py). Every other topic (the tables'
changelogs during recovery) goes through Faust's own per-record path unchanged.

Offsets. Source records are never Faust messages, so Faust's acknowledgement
bookkeeping knows nothing of them: what may be committed for a source partition is
exactly the app's `commit_limit` (stream/continuity.py: one past the last record the
agent finished with no hole before it), committed by Faust's own commit, which flushes
the producer first (stream/changelog_buffer.py). At a rebalance Faust waits for its
streams to be empty before it lets partitions go; `batch_idle` makes that wait include
the batch the agent is deciding, so no state is written to a partition already revoked.
A fetch handed over under an older consumer generation is dropped by the agent and read
again from the committed offset (Faust seeks every assigned partition there).

Fetching. aiokafka keeps one fetch in flight per broker, and asks again for a partition
only once its fetched records have all been taken. So while the agent works through a busy
partition's records, the next fetch goes out for the partitions with nothing buffered, the
idle ones (the other source topic, impressions, the standby changelogs), and the broker
holds it for up to the fetch's max wait, since they have no records. When the busy
partition runs dry, its next records wait for that fetch to come back. Faust sets the wait
to 1.5 s: reading a backlog of clicks while no postbacks came, the agent sat idle for ~0.7 s
at a time, half of the time (docs/benchmarks.md, session 14). The consumer thread here
gives its aiokafka consumer `STREAM_FETCH_MAX_WAIT_MS` instead (100 ms by default: an idle
worker then asks each broker ten times a second).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from mode import ServiceT

from stream.commit_limit import CommitLimitedConsumer
from stream.standby_apply import StandbyApplier

log = logging.getLogger(__name__)

_FETCHING = "FETCHING"  # Faust's diagnostic flag while its fetch loop waits on the broker


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """One fetch's source records, by partition in log order, and the consumer generation they came under."""

    generation: int
    partitions: list[tuple[TP, list[Any]]]  # aiokafka ConsumerRecords

    def __len__(self) -> int:
        return sum(len(records) for _, records in self.partitions)


class BatchReceiver(Protocol):
    """What the app (stream/faust_app.py) gives the consumer: the topics to batch and where batches go."""

    source_topics: frozenset[str]
    fetch_max_wait_ms: int

    async def on_source_batch(self, batch: SourceBatch) -> None: ...

    async def source_batch_idle(self) -> None: ...


def set_fetch_max_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> AIOKafkaConsumer:
    """Have a consumer not yet started long-poll at most `wait_ms` (its fetcher takes it at start)."""
    if not isinstance(getattr(consumer, "_fetch_max_wait_ms", None), int):
        raise RuntimeError("this aiokafka keeps its fetch max wait elsewhere (0.14 is pinned)")
    consumer._fetch_max_wait_ms = wait_ms
    return consumer


class SourceConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer long-polling the receiver's max wait."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        return set_fetch_max_wait(consumer, cast(BatchReceiver, self.app).fetch_max_wait_ms)


class BatchConsumer(CommitLimitedConsumer):
    @property
    def receiver(self) -> BatchReceiver:
        return cast(BatchReceiver, self.app)

    def _new_consumer_thread(self) -> SourceConsumerThread:
        return SourceConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def batch_topics(self) -> frozenset[str]:
        return self.receiver.source_topics

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - needs a broker
        """Faust's fetch loop (transport/consumer.py `_drain_messages`), source topics a fetch at a time."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # type: ignore[attr-defined]
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(_FETCHING)
                records, active = await self._wait_next_records(1.0)
                generation = self.app.consumer_generation_id
                await self.sleep(0)
                try:
                    if not records or self.should_stop:
                        continue
                    if not self.flow_active:  # as Faust's getmany: a rebalance began, start over there
                        await self.perform_seek()
                        continue
                    ours = await self._dispatch(records, active, generation)
                    if ours:
                        await self._hand_over(SourceBatch(generation, ours))
                finally:
                    self.diag.unset_flag(_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise

    async def _hand_over(self, batch: SourceBatch) -> None:  # pragma: no cover - needs a broker
        """Until the agents have the batch, a rebalance suspends the flow, or the consumer stops.

        Not mode's `wait_first`: it re-raises a hand-over that was cancelled as the caller's own
        cancellation, so the fetch loop ended as if Faust had stopped it, and during a rebalance
        Faust takes that for a crashed fetcher with no supervisor and stops the worker (seen in
        the cluster failover test). A hand-over that did not finish is a batch not handed over,
        like one a rebalance overtakes: its records are read again (after the rebalance from the
        committed offsets, otherwise from the hole the next batch leaves: stream/continuity.py).
        An error of the hand-over itself still propagates.
        """
        handed = asyncio.ensure_future(self.receiver.on_source_batch(batch))
        waits = (asyncio.ensure_future(self.suspend_flow.wait()), asyncio.ensure_future(self._stopped.wait()))
        try:
            await asyncio.wait((handed, *waits), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (handed, *waits):
                if not future.done():
                    future.cancel()
        if handed.done() and not handed.cancelled():
            handed.result()

    async def _dispatch(
        self, records: Mapping[TP, list[Any]], active: set[TP] | None, generation: int
    ) -> list[tuple[TP, list[Any]]]:
        """Source partitions' records, kept together; every other record down Faust's own path."""
        ours = []
        buffered = self._buffered_partitions
        for tp, batch in records.items():
            if not batch or not (active is None or tp in active or tp in buffered):
                continue
            if tp.topic in self.batch_topics:
                ours.append((TP(tp.topic, tp.partition), batch))
                self._read_offset[tp] = batch[-1].offset
                continue
            if self.app.consumer_generation_id != generation or not self.flow_active:
                return ours
            if self._standbys.apply(tp, batch, self._handed.get(tp)):  # stream/standby_apply.py
                self._read_offset[tp] = batch[-1].offset
                continue
            for record in batch:
                if self.app.consumer_generation_id != generation or not self.flow_active:
                    return ours  # as Faust's getmany: stop delivering what a rebalance made stale
                await self._deliver(tp, record)
        return ours

    async def _deliver(self, tp: TP, record: Any) -> None:
        """One record of another topic, as Faust's fetch loop delivers it."""
        offset = record.offset
        read = self._read_offset[tp]
        if read is not None and offset < read:
            return  # Faust drops what it has read already
        if read and offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, read + 1, offset)
        message = self._to_message(tp, record)
        await self.wait_first(self.callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = offset
        self._handed[tp] = offset

    @cached_property
    def _standbys(self) -> StandbyApplier:
        return StandbyApplier(self.app)

    @cached_property
    def _handed(self) -> dict[TP, int]:
        """The last offset of each partition handed to Faust's own path (see stream/standby_apply.py)."""
        return {}

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        """Faust's candidates for a commit (partitions with acked records), plus our source partitions."""
        seen: set[TP] = set(super()._filter_tps_with_pending_acks(topics))
        for tp in self.assignment():
            if tp.topic in self.batch_topics and (topics is None or tp in topics or tp.topic in topics):
                seen.add(tp)
        return iter(seen)

    def _new_offset(self, tp: TP) -> int | None:
        """A source partition commits what the agent finished; Faust's acks count for other topics."""
        if tp.topic not in self.batch_topics:
            return super()._new_offset(tp)
        limit = self.commit_limit(tp)
        committed = self._committed_offset[tp] or 0  # Faust keeps a committed 0 as None
        return limit if limit is not None and limit > committed else None

    async def wait_empty(self) -> None:
        """Faust's wait for its streams to finish their records, and for the agent's batch in hand."""
        await super().wait_empty()
        await self.receiver.source_batch_idle()
