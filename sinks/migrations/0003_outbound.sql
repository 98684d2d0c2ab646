-- Outbound postbacks: one row per request sent to a publisher (and per give-up without a request:
-- no http_status), from outbound.attempts, written exactly once like the other raw tables. A
-- delivery is one idempotency_key; its highest attempt says how it ended (delivered or dead) or
-- that it is still being retried (retry). `unknown`: the worker crashed before recording the answer
-- (the request was then resent, or dead-lettered as `uncertain`).

CREATE TABLE IF NOT EXISTS outbound_postbacks
(
    idempotency_key String,
    attempt         UInt32,
    attempted_at    DateTime64(3, 'UTC'),
    conversion_id   String,
    version         UInt64,
    publisher_id    LowCardinality(String),
    offer_id        LowCardinality(String),
    campaign_id     LowCardinality(String),
    click_id        String,
    event_name      LowCardinality(String),
    status          LowCardinality(String),
    method          LowCardinality(String),
    url             String,
    http_status     Nullable(UInt16),
    latency_ms      Nullable(UInt32),
    error           Nullable(String),
    outcome         LowCardinality(String),
    reason          LowCardinality(Nullable(String)),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    INDEX kafka_offsets kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (idempotency_key, attempt)
TTL toDateTime(attempted_at) + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Delivery rates by publisher and hour: rows by outcome; `requests` counts rows that made a request,
-- `latency_ms_sum` sums their latencies. Read with sum() ... GROUP BY.
CREATE TABLE IF NOT EXISTS outbound_hourly
(
    hour          DateTime('UTC'),
    publisher_id  LowCardinality(String),
    offer_id      LowCardinality(String),
    outcome       LowCardinality(String),
    reason        LowCardinality(String),
    attempts      UInt64,
    requests      UInt64,
    latency_ms_sum UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, publisher_id, offer_id, outcome, reason)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS outbound_hourly_mv TO outbound_hourly AS
SELECT toStartOfHour(attempted_at) AS hour, publisher_id, offer_id, outcome, ifNull(reason, '') AS reason,
       count() AS attempts, countIf(latency_ms IS NOT NULL) AS requests,
       sum(ifNull(outbound_postbacks.latency_ms, 0)) AS latency_ms_sum
FROM outbound_postbacks
GROUP BY hour, publisher_id, offer_id, outcome, reason;
