"""Standby replicas' changelog records written to the local store a fetch at a time.

Why. With two workers or more, each keeps a standby copy of the tables of partitions another
worker owns (`table_standby_replicas`), so that a failover finds the state local instead of
replaying the changelog. Faust applies a standby changelog record the way it delivers any record:
a Message, an Event, a queue put and a `wait_for` get, a buffer; that per-record path is the
"Faust floor" of `postbacks bench stream`. The active worker writes about one changelog record
per postback, so its standby paid that floor again for every postback of the other worker: in
`bench scale` two workers did 4,205 and 5,031 postbacks per worker-CPU-second with standbys
against 5,421 and 4,445 without (one worker: 5,186, 5,701; 5,061, 4,416), efficiency 0.81 and
0.88 against 1.07 and 1.01 (docs/benchmarks.md, session 12).

What is written is exactly what Faust's recovery writes (`Store.apply_changelog_batch`): every
record newer than the partition's standby offset, put or deleted in one RocksDB write batch,
then the store's persisted offset (where a promotion to active starts reading the changelog)
and the standby offset moved to the last one. Nothing else reads a standby's store.

Handing a partition over from Faust's path to this one must not reorder its records. Records
already handed to Faust may still wait in its queue, or in the recovery's buffer unapplied;
applying newer records first would let Faust's older ones land after them. So a fetch is taken
here only once Faust has seen every record handed to it for that partition (its standby offset
has reached what the consumer delivered), and Faust's buffered records for the table are applied
first, as Faust's own flush does. Otherwise, and during recovery (Faust reads changelogs itself
then), for any store but RocksDB, or a table with a changelog hook, the records go Faust's way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import TP
from rocksdict import WriteBatch


class StandbyApplier:
    def __init__(self, app: Any) -> None:
        self.app = app  # the Faust app: its table manager holds the recovery service

    def apply(self, tp: TP, records: Sequence[Any], delivered: int | None) -> bool:
        """Write one fetch of a standby changelog partition (log order); False: leave it to Faust.

        `delivered` is the offset of the last record of `tp` handed to Faust's own path (None: none).
        """
        recovery = self.app.tables.recovery
        if recovery.in_recovery or tp not in recovery.standby_tps:
            return False
        table = recovery.tp_to_table.get(tp)
        if table is None or table._on_changelog_event is not None:
            return False
        store = table.data
        if not (hasattr(store, "_db_for_partition") and hasattr(store, "set_persisted_offset")):
            return False  # the memory store: Faust's path (standbys run with RocksDB only)
        seen: int | None = recovery.standby_offsets.get(tp)
        if delivered is not None and (seen is None or seen < delivered):
            return False  # Faust still holds records of this partition: they must land first
        pending = recovery.buffers.get(table)
        if pending:
            table.apply_changelog_batch(pending)
            pending.clear()
        batch = WriteBatch(raw_mode=True)
        last = None
        for record in records:
            offset = record.offset
            if seen is not None and offset <= seen:
                continue  # applied already (Faust's own check)
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
            last = offset
        if last is not None:
            store._db_for_partition(tp.partition).write(batch)
            store.set_persisted_offset(tp, last)
            recovery.standby_offsets[tp] = last
        return True
