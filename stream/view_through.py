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

from postbacks.settings import Settings
from postbacks.topics import Topics
from stream import metrics
from stream.changelog_buffer import DrainingProducerBuffer
from stream.continuity import Continuity
from stream.decide import Decider
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

    async def _admit(self, message: Any) -> bool: ...
    def _unack(self, message: Any) -> None: ...
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
        app.agent(topic, name="view-through")(self._agent)

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        settings = self.host.settings
        assert isinstance(stream, faust.Stream)
        async for events in stream.take_events(settings.stream_batch_max, settings.stream_batch_within_s):
            await self._process([event.message for event in events])

    async def _process(self, messages: list[Any]) -> None:
        host = self.host
        generation = host.app.consumer_generation_id
        admitted = []
        for message in messages:
            if message.generation_id != generation:
                host._unack(message)
                continue
            if await host._admit(message):
                admitted.append(message)
        if not admitted:
            return
        batch = self.decider.run(admitted, self.io.get)
        for kind, n in batch.counts.items():
            host.processed[kind] += n
        for message, exc in batch.dead:
            await host._to_dead_letter(message, exc)
        producer = host.app.producer
        metrics.count_out(batch.emits)
        futures = [
            await producer.send(
                self.outputs[emit.kind],
                emit.key,
                emit.value,
                None,
                None,
                host.decider.codecs[emit.kind].headers_for(emit.schema_version),
            )
            for emit in batch.emits
        ]
        await asyncio.gather(*futures)  # outputs acknowledged before any state says they were sent
        if host.app.consumer_generation_id == generation:
            buffer = producer.buffer
            assert isinstance(buffer, DrainingProducerBuffer)
            await self.io.write(batch.states, producer, buffer)
        if host.app.consumer_generation_id != generation:
            for message in admitted:  # the partitions may be another worker's now: read again there
                host._unack(message)
            return
        for message in admitted:
            host.continuity.done(message.topic, message.partition, message.offset)
