"""The view-through agent: impressions and routed postbacks from `impressions.raw`, by device key.

A second agent of the stream's Faust app (stream/app.py builds it, handing itself over as the
`Host`), with its own table `view-state` (device key -> impressions and what was attributed to
them, decided in stream/view_decide.py). `impressions.raw` has the sources' partition count,
and Faust's assignor co-partitions the topics of one partition count that every worker reads,
so partition N of it and of the table's changelog go together; nothing else needs
co-partitioning: the routed postbacks are written into this same topic under the same key
(postbacks.devices), by the same partitioner (aiokafka's default, murmur2) as ingest's.

Guarantees, as the click path's (stream/app.py "Guarantees"): records are admitted in order
(stream/continuity.py, through the host), the outputs of a batch are acknowledged before its
state is written (a crash repeats outputs, idempotent downstream by request id and conversion
version, never loses them), and the commit goes no further than the batch finished.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import faust
from faust.types import TP

from postbacks.settings import Settings
from postbacks.topics import Topics
from stream import metrics
from stream.changelog_buffer import DrainingProducerBuffer
from stream.continuity import Continuity
from stream.decide import Decider
from stream.produce import BatchSender, Outgoing
from stream.source_batches import SourceBatch
from stream.table_io import TableIO
from stream.view_decide import ViewDecider

log = logging.getLogger(__name__)


class Host(Protocol):
    """What the agent uses of the click path's StreamApp."""

    settings: Settings
    topics: Topics
    decider: Decider
    app: Any
    processed: dict[str, int]
    continuity: Continuity

    async def _admit(self, tp: TP, records: list[Any]) -> list[Any]: ...
    def _sender(self) -> BatchSender: ...
    async def _to_dead_letter(self, message: Any, exc: Exception) -> None: ...


class ViewThrough:
    def __init__(self, host: Host, topic: faust.TopicT, outputs: dict[str, str]) -> None:
        self.host = host
        self.decider = ViewDecider(host.decider)
        self.outputs = outputs  # emit kind -> topic name
        settings, app = host.settings, host.app
        ttl_s = self.decider.state_ttl_ms() // 1000
        self.table = app.Table(
            "view-state",
            partitions=settings.topic_partitions,
            key_type=bytes,
            value_type=bytes,
            options={"ttl": ttl_s} if settings.stream_store == "rocksdb" else None,
            extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": str(ttl_s * 1000)},
        )
        self.changelog_configs = {
            self.table.changelog_topic.get_topic_name(): {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(ttl_s * 1000),
            }
        }
        self.io = TableIO(self.table)
        host.processed.update(impressions=0, view_postbacks=0)
        # Subscribed through the conductor; its records come a fetch at a time (stream/source_batches.py).
        app.topics.add(topic)
        self.topic_name: str = topic.get_topic_name()
        self.batches = app.channel(maxsize=2)
        self.idle = asyncio.Event()
        self.idle.set()
        app.agent(self.batches, name="view-through")(self._agent)

    async def _agent(self, batches: faust.StreamT[SourceBatch]) -> None:
        async for batch in batches:
            self.idle.clear()
            try:
                await self._process(batch)
            except Exception as exc:  # as the click path's agent: stop the worker (stream/app.py)
                log.exception("view-through batch failed: stopping the worker", extra={"records": len(batch)})
                await self.host.app.crash(exc)
                raise
            finally:
                self.idle.set()

    async def _process(self, batch: SourceBatch) -> None:
        host = self.host
        generation = batch.generation
        if generation != host.app.consumer_generation_id:
            return  # fetched before a rebalance: read again from the committed offset
        admitted: list[Any] = []
        for tp, records in batch.partitions:
            admitted += await host._admit(tp, records)
        if not admitted:
            return
        decided = self.decider.run(admitted, self.io.get)
        for kind, n in decided.counts.items():
            host.processed[kind] += n
        for message, exc in decided.dead:
            await host._to_dead_letter(message, exc)
        producer = host.app.producer
        buffer = producer.buffer
        assert isinstance(buffer, DrainingProducerBuffer)
        metrics.count_out(decided.emits)
        codecs = host.decider.codecs
        sender = host._sender()
        outputs = await sender.send(
            Outgoing(self.outputs[e.kind], e.key, e.value, codecs[e.kind].headers_for(e.schema_version))
            for e in decided.emits
        )
        for sent in outputs:
            buffer.track(sent.delivery)
        await asyncio.gather(*(sent.delivery for sent in outputs))  # acknowledged before any state says so
        if host.app.consumer_generation_id != generation:
            return  # the partitions may be another worker's now: read again there
        self.io.track(await sender.send(self.io.apply(decided.states)), buffer)
        if host.app.consumer_generation_id != generation:
            return
        last: dict[tuple[str, int], int] = {}
        for message in admitted:
            last[(message.topic, message.partition)] = message.offset
        for (topic, partition), offset in last.items():
            host.continuity.done(topic, partition, offset)
