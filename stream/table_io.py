"""A Faust table read and written by partition, for a batch: no per-event context needed.

Why. Faust's `table[key]` finds the partition (of the local store and of the changelog
record) in the event the current task is iterating. A batch is decided after its events
were iterated, so that context is gone, and a table access through it costs more than
the decision. Here a key's partition is given (the source record's: tables are
co-partitioned with the sources), the local store is read and written directly, and
each write hands its changelog record straight to the producer, in the same order
and partition as Faust's `Table.send_changelog` would, and registers its delivery
with the producer buffer that Faust drains, acknowledgements included, before it
commits offsets (stream/changelog_buffer.py); the last acknowledgement of a partition
moves the store's persisted changelog offset as Faust's own writes do.

Two stores are supported, the two the worker is configured with: RocksDB (rocksdict)
and memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksStore

from stream.batch import Written
from stream.changelog_buffer import DrainingProducerBuffer


class TableIO:
    def __init__(self, table: Any) -> None:
        self.table = table  # a faust Table of bytes to bytes (raw codecs)

    @property
    def _store(self) -> Any:
        return self.table.data

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

    async def write(
        self, writes: Mapping[bytes, Written], producer: Any, buffer: DrainingProducerBuffer
    ) -> None:
        """Write each key's final value locally and hand its changelog record to the producer.

        Straight to the producer, not through Faust's buffer and its task that sends one
        record at a time; `buffer` is told of each delivery so that Faust's flush before a
        commit still waits for every acknowledgement (stream/changelog_buffer.py).
        """
        store = self._store
        rocks = isinstance(store, RocksStore)
        if not rocks and not isinstance(store, MemoryStore):
            raise TypeError(f"unsupported table store {type(store).__name__}")
        topic = self.table.changelog_topic.get_topic_name()
        last: dict[int, asyncio.Future[Any]] = {}
        for key, written in writes.items():
            partition, value = written.partition, written.value
            if rocks:
                db = store._db_for_partition(partition)
                if value is None:
                    db.delete(key)
                    store._key_index.pop(key, None)
                else:
                    db.put(key, value)
                    store._key_index[key] = partition
            elif value is None:
                store.data.pop(key, None)
                store._key_partition.pop(key, None)
            else:
                store.data[key] = value
                store._key_partition[key] = partition
            delivery = await producer.send(topic, key, value, partition, None, None)
            buffer.track(delivery)
            last[partition] = delivery
        if rocks:
            for delivery in last.values():  # a partition's records are acknowledged in order
                delivery.add_done_callback(self._persisted)

    def _persisted(self, delivery: asyncio.Future[Any]) -> None:
        """Where recovery starts reading this partition's changelog, as Faust's own writes record it."""
        if not delivery.cancelled() and delivery.exception() is None:
            metadata = delivery.result()
            self._store.set_persisted_offset(metadata.topic_partition, metadata.offset)
