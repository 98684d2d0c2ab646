"""Prometheus metrics of a stream worker (`STREAM_METRICS_PORT`).

The hot path pays nothing it did not already pay: records in are the worker's own `processed`
counts and records out its `emitted` counts (one Counter update per batch of outputs), both read
when Prometheus scrapes; held postbacks are counted by the clock, which walks them anyway.
Consumer lag comes from Kafka (postbacks.metrics.GroupLag).
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

HELD = Gauge(
    "postbacks_stream_held_postbacks",
    "Clicks holding postbacks that wait for their click or their grace period (as of the last clock tick)",
    registry=REGISTRY,
)

EMITTED: Tally[str] = Tally()


def count_out(emits: Iterable[Any]) -> None:
    """Outputs by kind (conversion, rejected, duplicate, ...): one update per batch of outputs."""
    EMITTED.update(emit.kind for emit in emits)


class Processed(Protocol):
    @property
    def processed(self) -> Mapping[str, int]: ...

    @property
    def datadir(self) -> Path: ...


def directory_bytes(path: Path) -> int:
    """Bytes of the files below `path` (the worker's table stores); 0 when it does not exist yet."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # a store file compacted away between listing and stat
                continue
    return total


class StreamRecords(Collector):
    def __init__(self, stream: Processed) -> None:
        self.stream = stream

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        records_in = CounterMetricFamily(
            "postbacks_stream_records_in",
            "Records the worker processed by kind: clicks, postbacks, ticks, dead_letter, rewound",
            labels=["kind"],
        )
        for kind, count in sorted(dict(self.stream.processed).items()):
            records_in.add_metric([kind], count)
        records_out = CounterMetricFamily(
            "postbacks_stream_records_out", "Records the worker produced, by kind", labels=["kind"]
        )
        for kind, count in sorted(dict(EMITTED).items()):
            records_out.add_metric([kind], count)
        state = GaugeMetricFamily(
            "postbacks_stream_state_bytes",
            "Size on disk of the worker's table stores (click state, pending index)",
        )
        state.add_metric([], directory_bytes(self.stream.datadir))
        yield from (records_in, records_out, state)
