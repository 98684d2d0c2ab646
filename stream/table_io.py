"""A Faust table read and written by partition, for a batch: no per-event context needed.

Why. Faust's `table[key]` finds the partition (of the local store and of the changelog
record) in the event the current task is iterating. A batch is decided after its events
were iterated, so that context is gone, and a table access through it costs more than
the decision. Here a key's partition is given (the source record's: tables are
co-partitioned with the sources), the local store is read and written directly, and
each write sends its changelog record through Faust's own `Table.send_changelog`: the
record goes through the producer buffer that Faust drains, acknowledgements included,
before it commits offsets (stream/changelog_buffer.py), and its acknowledgement moves
the store's persisted changelog offset as Faust's own writes do.

Two stores are supported, the two the worker is configured with: RocksDB (rocksdict)
and memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksStore

from stream.batch import Written


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

    def write(self, writes: Mapping[bytes, Written]) -> None:
        """Write each key's final value locally and send its changelog record (not awaited here)."""
        store = self._store
        rocks = isinstance(store, RocksStore)
        if not rocks and not isinstance(store, MemoryStore):
            raise TypeError(f"unsupported table store {type(store).__name__}")
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
            if value is None:
                self.table.send_changelog(partition, key, None, value_serializer="raw")
            else:
                self.table.send_changelog(partition, key, value)
