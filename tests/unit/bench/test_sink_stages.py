"""The e2e bench's sink breakdown: the sink's histograms over the load's span only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench import sink_stages


def test_the_breakdown_counts_only_what_happened_between_the_scrapes() -> None:
    registry = CollectorRegistry()
    stages = Histogram(sink_stages.STAGES, "", ["table", "stage"], buckets=(0.1, 1.0), registry=registry)
    engine = Histogram(sink_stages.ENGINE, "", ["call", "phase"], buckets=(0.1, 1.0), registry=registry)
    stages.labels("conversion_versions", "batched").observe(5.0)  # before the load: not counted
    before = sink_stages.parse(generate_latest(registry).decode())
    for seconds in (0.05, 0.15):
        stages.labels("conversion_versions", "batched").observe(seconds)
    stages.labels("clicks", "batched").observe(0.5)  # another table: not in its line
    engine.labels("conversion_versions", "run").observe(0.2)
    lines = sink_stages.summary(
        sink_stages.difference(sink_stages.parse(generate_latest(registry).decode()), before),
        "conversion_versions",
    )
    assert lines == [
        "sink stages of conversion_versions batches: batched mean 100 ms, p99 ≤ 1,000 ms (2)",
        "engine calls: conversion_versions run mean 200 ms, p99 ≤ 1,000 ms (1)",
    ]
