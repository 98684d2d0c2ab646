"""Prometheus metrics of the outbound worker (`OUTBOUND_METRICS_PORT`).

Requests are counted as they are judged (one update per HTTP request, which costs far more);
the destinations' queues, pauses and decided deliveries are read when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

ATTEMPTS = Counter(
    "postbacks_outbound_attempts_total",
    "Requests to publishers by outcome: delivered, retry, dead",
    ["publisher", "outcome"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "postbacks_outbound_request_seconds",
    "Time to a publisher's answer (or the request's failure)",
    ["publisher"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)


class DestinationView(Protocol):
    """What the collector reads of a destination (outbound.delivery.Destination)."""

    @property
    def waiting(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def paused(self) -> bool: ...


class Destinations(Collector):
    """Per publisher: waiting deliveries, requests in flight, paused or not, deliveries decided."""

    def __init__(self, destinations: Callable[[], Mapping[str, DestinationView]]) -> None:
        self.destinations = destinations

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        waiting = GaugeMetricFamily(
            "postbacks_outbound_waiting_deliveries",
            "Deliveries queued or waiting for a retry",
            labels=["publisher"],
        )
        in_flight = GaugeMetricFamily(
            "postbacks_outbound_in_flight_requests", "Requests under way", labels=["publisher"]
        )
        paused = GaugeMetricFamily(
            "postbacks_outbound_publisher_paused",
            "1 while a publisher is paused after failures",
            labels=["publisher"],
        )
        decided = CounterMetricFamily(
            "postbacks_outbound_deliveries",
            "Deliveries decided by this worker since it started: delivered or dead",
            labels=["publisher", "outcome"],
        )
        total_paused = 0
        for name, d in sorted(self.destinations().items()):
            waiting.add_metric([name], d.waiting)
            in_flight.add_metric([name], d.in_flight)
            paused.add_metric([name], 1 if d.paused else 0)
            total_paused += 1 if d.paused else 0
            for outcome in ("delivered", "dead"):
                decided.add_metric([name, outcome], d.counts.get(outcome, 0))
        publishers_paused = GaugeMetricFamily(
            "postbacks_outbound_paused_publishers", "Publishers paused right now"
        )
        publishers_paused.add_metric([], total_paused)
        yield from (waiting, in_flight, paused, publishers_paused, decided)
