"""Prometheus metrics of the ingest service (served at GET /metrics).

One registry per process: with INGEST_WORKERS > 1 each worker has its own, which is
what a scraper behind the same port sees one at a time. Run one worker per
container/pod when exact per-process series matter.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "postbacks_ingest_requests_total",
    "HTTP requests by route and status",
    ["route", "status"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "postbacks_ingest_rejected_total", "Requests refused, by reason", ["reason"], registry=REGISTRY
)
PUBLISH_SECONDS = Histogram(
    "postbacks_ingest_publish_seconds",
    "Wait for the broker's acknowledgement",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("postbacks_ingest_in_flight", "Requests waiting for Kafka", registry=REGISTRY)
RATE_LIMITED = Counter(
    "postbacks_ingest_rate_limited_total",
    "Requests answered 429 because their source was over its rate limit",
    ["source"],
    registry=REGISTRY,
)
UNAVAILABLE = Counter(
    "postbacks_ingest_unavailable_total",
    "Requests answered 503 (broker slow/away, overload)",
    registry=REGISTRY,
)


@cache
def requests(route: str, status: int) -> Any:
    """One (route, status) series. Cached: labels() takes a lock and builds a key on every call,
    which is measurable on the ingest hot path; routes and statuses are few."""
    return REQUESTS.labels(route, str(status))


@cache
def publish_seconds(topic: str) -> Any:
    return PUBLISH_SECONDS.labels(topic)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
