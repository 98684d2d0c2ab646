"""A Faust table read and written by partition, for a batch: no per-event context needed.

Why. Faust's `table[key]` finds the partition (of the local store and of the changelog
record) in the event the current task is iterating. A batch is decided outside any
event, so that context is not there, and a table access through it costs more than
the decision. Here a key's partition is given (the source record's: tables are
co-partitioned with the sources), the local store is read and written directly, and
each write becomes a changelog record in the same partition as Faust's
`Table.send_changelog` would put it, handed to the producer with the batch's other
records (stream/produce.py). Their acknowledgements are registered with the producer
buffer that Faust drains, acknowledgements included, before it commits offsets
(stream/changelog_buffer.py); a partition's acknowledged batch moves the store's
persisted changelog offset to its last record, as Faust's own writes do.

Two stores are supported, the two the worker is configured with: RocksDB (rocksdict)
and memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksStore
from faust.types import TP
from rocksdict import WriteBatch

from stream.batch import Written
from stream.changelog_buffer import DrainingProducerBuffer
from stream.produce import Outgoing, SentBatch


class TableIO:
    def __init__(self, table: Any) -> None:
        self.table = table  # a faust Table of bytes to bytes (raw codecs)

    @property
    def _store(self) -> Any:
        return self.table.data

    @property
    def topic(self) -> str:
        name: str = self.table.changelog_topic.get_topic_name()
        return name

    def get(self, key: bytes, partition: int) -> bytes | None:
        store = self._store
        if isinstance(store, RocksStore):
            value: bytes | None = store._db_for_partition(partition).get(key)
            return value
        if isinstance(store, MemoryStore):
            return store.data.get(key)
        raise TypeError(f"unsupported table store {type(store).__name__}")

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        """Every entry of the partitions this worker holds (the tables' own iteration)."""
        return list(self.table.items())

    def apply(self, writes: Mapping[bytes, Written]) -> list[Outgoing]:
        """Write each key's final value locally; return the changelog records to send for them."""
        store = self._store
        rocks = isinstance(store, RocksStore)
        if not rocks and not isinstance(store, MemoryStore):
            raise TypeError(f"unsupported table store {type(store).__name__}")
        topic = self.topic
        records = []
        batches: dict[int, WriteBatch] = {}
        for key, written in writes.items():
            partition, value = written.partition, written.value
            if rocks:
                # One RocksDB write batch a partition: half the cost of a put a key, and the
                # batch's states land in the local store together.
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = WriteBatch(raw_mode=True)
                if value is None:
                    batch.delete(key)
                    store._key_index.pop(key, None)
                else:
                    # Faust's key->partition index (a locked LRU) only speeds up its own reads
                    # without a partition; they search the partitions when a key is not in it.
                    # Filling it cost a third of this loop; a key never changes partition.
                    batch.put(key, value)
            elif value is None:
                store.data.pop(key, None)
                store._key_partition.pop(key, None)
            else:
                store.data[key] = value
                store._key_partition[key] = partition
            records.append(Outgoing(topic, key, value, None, partition))
        for partition, batch in batches.items():
            store._db_for_partition(partition).write(batch)
        return records

    def track(self, sent: Iterable[SentBatch], buffer: DrainingProducerBuffer) -> None:
        """Let the commit wait for this table's changelog batches; record where recovery starts."""
        rocks = isinstance(self._store, RocksStore)
        topic = self.topic
        for batch in sent:
            if batch.topic != topic:
                continue
            buffer.track(batch.delivery)
            if rocks:  # a partition's batches are acknowledged in order
                batch.delivery.add_done_callback(self._persisted(batch))

    def _persisted(self, batch: SentBatch) -> Any:
        """Where recovery starts reading this partition's changelog, as Faust's own writes record it."""

        def done(delivery: asyncio.Future[Any]) -> None:
            if not delivery.cancelled() and delivery.exception() is None:
                first = delivery.result().offset  # the batch's first record
                tp = TP(batch.topic, batch.partition)
                self._store.set_persisted_offset(tp, first + batch.count - 1)

        return done
