-- What analysts query: the latest version of each conversion, and hourly aggregates.
-- Aggregates are fed by materialized views at insert time; each raw row is inserted exactly once,
-- so sums are exact. A status update carries its previous status and amounts: the view adds the
-- new version (+1) and retracts the previous one (-1), so a conversion counts once, at its latest
-- status. Always read aggregates with sum() ... GROUP BY: merges are eventual.

CREATE TABLE IF NOT EXISTS conversions AS conversion_versions
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(conversion_time)
ORDER BY conversion_id
TTL toDateTime(conversion_time) + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS conversions_latest_mv TO conversions AS
SELECT * FROM conversion_versions;

CREATE TABLE IF NOT EXISTS clicks_hourly
(
    hour          DateTime('UTC'),
    offer_id      LowCardinality(String),
    campaign_id   LowCardinality(String),
    publisher_id  LowCardinality(String),
    clicks        UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, offer_id, campaign_id, publisher_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_hourly_mv TO clicks_hourly AS
SELECT toStartOfHour(clicked_at) AS hour, offer_id, campaign_id, publisher_id, count() AS clicks
FROM clicks
GROUP BY hour, offer_id, campaign_id, publisher_id;

CREATE TABLE IF NOT EXISTS conversions_hourly
(
    hour          DateTime('UTC'),
    offer_id      LowCardinality(String),
    campaign_id   LowCardinality(String),
    publisher_id  LowCardinality(String),
    country_code  LowCardinality(String),
    event_name    LowCardinality(String),
    status        LowCardinality(String),
    conversions   Int64,
    revenue_usd   Decimal(38, 6),
    payout_usd    Decimal(38, 6)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, offer_id, campaign_id, publisher_id, country_code, event_name, status)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS conversions_hourly_mv TO conversions_hourly AS
SELECT hour, offer_id, campaign_id, publisher_id, country_code, event_name, change_status AS status,
       sum(change_sign) AS conversions, sum(change_revenue) AS revenue_usd, sum(change_payout) AS payout_usd
FROM
(
    SELECT
        toStartOfHour(conversion_time) AS hour, offer_id, campaign_id, publisher_id, country_code, event_name,
        tupleElement(change, 1) AS change_status,
        tupleElement(change, 2) AS change_sign,
        toDecimal128(tupleElement(change, 3), 6) AS change_revenue,
        toDecimal128(tupleElement(change, 4), 6) AS change_payout
    FROM conversion_versions
    ARRAY JOIN arrayFilter(c -> tupleElement(c, 1) != '', [
        (toString(status), toInt64(1), revenue_usd, payout_usd),
        (ifNull(toString(previous_status), ''), toInt64(-1),
         -ifNull(previous_revenue_usd, toDecimal64(0, 6)), -ifNull(previous_payout_usd, toDecimal64(0, 6)))
    ]) AS change
)
GROUP BY hour, offer_id, campaign_id, publisher_id, country_code, event_name, change_status;

CREATE TABLE IF NOT EXISTS rejections_hourly
(
    hour          DateTime('UTC'),
    stage         LowCardinality(String),
    reason        LowCardinality(String),
    source        LowCardinality(String),
    offer_id      LowCardinality(String),
    publisher_id  LowCardinality(String),
    rejected      UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, stage, reason, source, offer_id, publisher_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rejections_hourly_mv TO rejections_hourly AS
SELECT toStartOfHour(received_at) AS hour, stage, reason, source, offer_id, publisher_id, count() AS rejected
FROM rejected_postbacks
GROUP BY hour, stage, reason, source, offer_id, publisher_id;

CREATE TABLE IF NOT EXISTS duplicates_hourly
(
    hour          DateTime('UTC'),
    reason        LowCardinality(String),
    source        LowCardinality(String),
    offer_id      LowCardinality(String),
    publisher_id  LowCardinality(String),
    duplicates    UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, reason, source, offer_id, publisher_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS duplicates_hourly_mv TO duplicates_hourly AS
SELECT toStartOfHour(received_at) AS hour, reason, source, offer_id, publisher_id, count() AS duplicates
FROM duplicate_postbacks
GROUP BY hour, reason, source, offer_id, publisher_id;
