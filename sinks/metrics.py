"""Prometheus metrics of the sink (`SINK_METRICS_PORT`): per table, counted per batch, never per record."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS = Counter(
    "postbacks_sink_records_total",
    "Records the sink took from Kafka, by table and outcome: inserted, filtered (already stored, "
    "a replayed batch), undecodable (skipped, logged)",
    ["table", "outcome"],
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "postbacks_sink_batch_rows",
    "Records per inserted batch",
    ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000),
    registry=REGISTRY,
)
BATCH_AGE = Histogram(
    "postbacks_sink_batch_age_seconds",
    "Age of a batch's first record in the sink when the batch is in ClickHouse",
    ["table"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
INSERT_SECONDS = Histogram(
    "postbacks_sink_insert_seconds",
    "ClickHouse insert latency of a batch, retries included",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
INSERT_FAILURES = Counter(
    "postbacks_sink_insert_failures_total",
    "Failed insert attempts (each retried until it succeeds)",
    ["table"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "postbacks_sink_stage_seconds",
    "Where a batch's latency goes, per batch: delivered (written to Kafka -> taken by the sink), "
    "batched (taken -> its flush starts), plan and done (the two offset commits of its flush)",
    ["table", "stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
ENGINE_SECONDS = Histogram(
    "postbacks_sink_engine_seconds",
    "Calls to ClickHouse by what they do (an insert's table, or query): wait (for the one thread "
    "the embedded engine's calls take turns on) and run (the call itself)",
    ["call", "phase"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
