"""aiokafka's fetched records as four-field named tuples, for consumers that read only those four.

Why. For every record it hands over, aiokafka (0.14, pinned) builds a `ConsumerRecord` in
Python: a dataclass of eleven fields, two `len` calls, the headers copied into a tuple, behind
two generator frames. The sink reads four of those fields (offset, timestamp, value, headers),
and building the objects was half of its main thread (docs/benchmarks.md, "Profiles"). A
`FetchedRecord` is a tuple made in one C call: 2.9 to 3.1 µs a record through aiokafka's own
records iteration against 4.0 to 5.1 µs for its `ConsumerRecord`s (10,000 records of 300 bytes
built in memory, measured back to back; docs/benchmarks.md, session 13).

How. `light_records(consumer)`, once the consumer has started, puts a mapping in front of the
fetcher's results that switches each partition's records object, as aiokafka stores it, to a
subclass of aiokafka's own whose only changes are the record it builds and one frame less per
record. Everything else is aiokafka's code, unchanged: transaction markers and aborted batches
(the sink reads committed records only), CRC checks, positions, seeks, rebalances. The tuples
have the attribute names of `ConsumerRecord`'s four fields, so code reading those works with
either; if a later aiokafka stores its results differently, `light_records` logs it and the
consumer keeps handing over its own records (tests/integration/test_fetched.py
fails on such a version).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords

log = logging.getLogger(__name__)


class FetchedRecord(NamedTuple):
    """The fields of aiokafka's `ConsumerRecord` a batch reader needs, by the same names."""

    offset: int
    timestamp: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


_make = tuple.__new__  # a NamedTuple's own __new__ is a Python function: a frame per record


class _LightPartitionRecords(PartitionRecords):  # type: ignore[misc]
    """aiokafka's records of one fetched partition, handed over as FetchedRecord."""

    def __iter__(self) -> Any:
        # The generator itself: aiokafka's __next__ is one more Python frame per record.
        return self._records_iterator if self._records_iterator is not None else iter(())

    def _consumer_record(self, tp: Any, record: Any) -> FetchedRecord:
        return _make(FetchedRecord, (record.offset, record.timestamp, record.value, tuple(record.headers)))


class _LightResults(OrderedDict[Any, Any]):
    """The fetcher's results by partition, each switched to light records as it is stored."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        if result.__class__ is FetchResult:
            records = result._partition_records
            if records is not None and records.__class__ is PartitionRecords:
                records.__class__ = _LightPartitionRecords  # same layout: a subclass with no state
        super().__setitem__(tp, result)


def light_records(consumer: AIOKafkaConsumer) -> bool:
    """Have a started consumer hand over FetchedRecord tuples; False (logged) if it cannot here."""
    fetcher = getattr(consumer, "_fetcher", None)
    results = getattr(fetcher, "_records", None)
    if results.__class__ is _LightResults:
        return True
    if results.__class__ is not OrderedDict:
        log.warning(
            "fetched records stay aiokafka's own",
            extra={"reason": "the fetcher does not keep its results as aiokafka 0.14 does"},
        )
        return False
    light = _LightResults()
    for tp, result in list(results.items()):  # a fetch that completed before this call
        light[tp] = result
    fetcher._records = light  # type: ignore[union-attr]
    return True
