-- Fraud signals (README "Fraud signals").
-- Judged by the stream, on one click: `ctit_long` and `country_mismatch` (and any fraud rule a
-- plugin registers). An offer refuses them (rejected_postbacks / rejections_hourly, by reason) or
-- flags them: the conversion keeps the reasons in enrichment['fraud_flags'] (comma-separated),
-- on every version, and fraud_flags_hourly counts flagged conversions at their latest status,
-- +1 for a version and -1 for the one it replaces, like conversions_hourly.
-- Judged here, across clicks: click flooding (clicks from one IP on one offer within a minute)
-- and reinstalls (a device id converting on a second click of one offer). The stream is
-- partitioned by click id, so no worker sees an IP's or a device's other clicks; ClickHouse sees
-- them all. These two flag, never refuse: fraud_signals(click_flood_per_minute = N) lists each
-- conversion's signals, fraud_signals_hourly(click_flood_per_minute = N) counts them.

CREATE TABLE IF NOT EXISTS fraud_flags_hourly
(
    hour          DateTime('UTC'),
    offer_id      LowCardinality(String),
    campaign_id   LowCardinality(String),
    publisher_id  LowCardinality(String),
    flag          LowCardinality(String),
    status        LowCardinality(String),
    conversions   Int64,
    revenue_usd   Decimal(38, 6),
    payout_usd    Decimal(38, 6)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, offer_id, campaign_id, publisher_id, flag, status)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS fraud_flags_hourly_mv TO fraud_flags_hourly AS
SELECT hour, offer_id, campaign_id, publisher_id, flag, change_status AS status,
       sum(change_sign) AS conversions, sum(change_revenue) AS revenue_usd, sum(change_payout) AS payout_usd
FROM
(
    SELECT
        toStartOfHour(conversion_time) AS hour, offer_id, campaign_id, publisher_id, flag,
        tupleElement(change, 1) AS change_status,
        tupleElement(change, 2) AS change_sign,
        toDecimal128(tupleElement(change, 3), 6) AS change_revenue,
        toDecimal128(tupleElement(change, 4), 6) AS change_payout
    FROM conversion_versions
    ARRAY JOIN arrayFilter(f -> f != '', splitByChar(',', enrichment['fraud_flags'])) AS flag
    ARRAY JOIN arrayFilter(c -> tupleElement(c, 1) != '', [
        (toString(status), toInt64(1), revenue_usd, payout_usd),
        (ifNull(toString(previous_status), ''), toInt64(-1),
         -ifNull(previous_revenue_usd, toDecimal64(0, 6)), -ifNull(previous_payout_usd, toDecimal64(0, 6)))
    ]) AS change
)
GROUP BY hour, offer_id, campaign_id, publisher_id, flag, change_status;

CREATE TABLE IF NOT EXISTS clicks_by_ip_minute
(
    minute        DateTime('UTC'),
    offer_id      LowCardinality(String),
    ip            String,
    clicks        UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (offer_id, ip, minute)
TTL minute + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_by_ip_minute_mv TO clicks_by_ip_minute AS
SELECT toStartOfMinute(clicked_at) AS minute, offer_id, ip, count() AS clicks
FROM clicks
GROUP BY minute, offer_id, ip;

CREATE VIEW IF NOT EXISTS fraud_signals AS
SELECT
    conversion_id, click_id, offer_id, campaign_id, publisher_id, event_name, status, conversion_time,
    revenue_usd, payout_usd, click_ip, device_id, clicks_that_minute,
    arrayFilter(s -> s != '', arrayConcat(
        splitByChar(',', flags),
        [if(clicks_that_minute > {click_flood_per_minute:UInt32}, 'click_flood', ''),
         if(device_id != '' AND first_click_of_device != click_id, 'reinstall', '')]
    )) AS signals
FROM
(
    SELECT
        c.conversion_id AS conversion_id, c.click_id AS click_id, c.offer_id AS offer_id,
        c.campaign_id AS campaign_id, c.publisher_id AS publisher_id, c.event_name AS event_name,
        c.status AS status, c.conversion_time AS conversion_time, c.revenue_usd AS revenue_usd,
        c.payout_usd AS payout_usd, c.click_ip AS click_ip, c.enrichment['fraud_flags'] AS flags,
        coalesce(nullIf(c.gaid, ''), nullIf(c.idfa, ''), nullIf(c.android_id, ''), '') AS device_id,
        first_value(c.click_id) OVER (
            PARTITION BY c.offer_id, device_id ORDER BY c.conversion_time, c.conversion_id
        ) AS first_click_of_device,
        ifNull(f.clicks, 0) AS clicks_that_minute
    FROM conversions AS c FINAL
    LEFT JOIN
    (
        SELECT offer_id, ip, minute, sum(clicks) AS clicks
        FROM clicks_by_ip_minute GROUP BY offer_id, ip, minute
    ) AS f
    ON f.offer_id = c.offer_id AND f.ip = ifNull(c.click_ip, '') AND f.minute = toStartOfMinute(c.click_time)
);

CREATE VIEW IF NOT EXISTS fraud_signals_hourly AS
SELECT toStartOfHour(conversion_time) AS hour, offer_id, campaign_id, publisher_id, signal, status,
       count() AS conversions, sum(revenue_usd) AS revenue_usd, sum(payout_usd) AS payout_usd
FROM fraud_signals(click_flood_per_minute = {click_flood_per_minute:UInt32})
ARRAY JOIN signals AS signal
GROUP BY hour, offer_id, campaign_id, publisher_id, signal, status
