"""Prometheus metrics of a stream worker (`STREAM_METRICS_PORT`).

The hot path pays nothing it did not already pay: records in are the worker's own `processed`
counts and records out its `emitted` counts (one Counter update per batch of outputs), both read
when Prometheus scrapes; held postbacks are counted by the clock, which walks them anyway.
Consumer lag comes from Kafka (postbacks.metrics.GroupLag).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily
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


class StreamRecords(Collector):
    def __init__(self, stream: Processed) -> None:
        self.stream = stream

    def collect(self) -> Iterable[CounterMetricFamily]:
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
        yield from (records_in, records_out)
