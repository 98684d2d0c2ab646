-- Raw tables written by the sinks. Every row keeps the Kafka partition and offset it came from:
-- after a crash the sink skips offsets already stored, which makes inserts exactly-once.
-- non_replicated_deduplication_window lets a retried insert (same dedup token) be dropped.

CREATE TABLE IF NOT EXISTS clicks
(
    click_id       String,
    clicked_at     DateTime64(3, 'UTC'),
    offer_id       LowCardinality(String),
    publisher_id   LowCardinality(String),
    campaign_id    LowCardinality(String),
    pub_click_id   Nullable(String),
    sub1           Nullable(String),
    sub2           Nullable(String),
    sub3           Nullable(String),
    sub4           Nullable(String),
    sub5           Nullable(String),
    ip             String,
    user_agent     Nullable(String),
    referrer       Nullable(String),
    country_code   LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset   UInt64,
    INDEX kafka_offsets kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(clicked_at)
ORDER BY (offer_id, publisher_id, toStartOfHour(clicked_at), click_id)
TTL toDateTime(clicked_at) + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Every version of every conversion (a status update is a new version). The sink's target;
-- `conversions` (latest version) and the hourly aggregates are fed from it by materialized views.
CREATE TABLE IF NOT EXISTS conversion_versions
(
    conversion_id        String,
    version              UInt64,
    status               LowCardinality(String),
    previous_status      LowCardinality(Nullable(String)),
    previous_version     Nullable(UInt64),
    dedup_key            String,
    request_id           String,
    received_at          DateTime64(3, 'UTC'),
    source               LowCardinality(String),
    click_id             String,
    event_name           LowCardinality(String),
    is_install           Bool,
    conversion_time      DateTime64(3, 'UTC'),
    install_time         Nullable(DateTime64(3, 'UTC')),
    click_time           DateTime64(3, 'UTC'),
    click_to_conversion_s Int64,
    ctit_long            Bool,
    offer_id             LowCardinality(String),
    publisher_id         LowCardinality(String),
    campaign_id          LowCardinality(String),
    pub_click_id         Nullable(String),
    sub1                 Nullable(String),
    sub2                 Nullable(String),
    sub3                 Nullable(String),
    sub4                 Nullable(String),
    sub5                 Nullable(String),
    transaction_id       Nullable(String),
    action_id            Nullable(String),
    goal                 Nullable(String),
    revenue              Nullable(Decimal(18, 6)),
    revenue_currency     LowCardinality(Nullable(String)),
    revenue_usd          Decimal(18, 6),
    payout               Nullable(Decimal(18, 6)),
    payout_currency      LowCardinality(Nullable(String)),
    payout_usd           Decimal(18, 6),
    previous_revenue_usd Nullable(Decimal(18, 6)),
    previous_payout_usd  Nullable(Decimal(18, 6)),
    fx_rate              Nullable(Decimal(18, 6)),
    country_code         LowCardinality(String),
    device_ip            Nullable(String),
    click_ip             Nullable(String),
    device_family        LowCardinality(Nullable(String)),
    os_family            LowCardinality(Nullable(String)),
    os_version           LowCardinality(Nullable(String)),
    browser_family       LowCardinality(Nullable(String)),
    platform             LowCardinality(Nullable(String)),
    app_id               Nullable(String),
    site_id              Nullable(String),
    idfa                 Nullable(String),
    gaid                 Nullable(String),
    android_id           Nullable(String),
    is_retargeting       Nullable(Bool),
    event_value          Nullable(String),
    extra                Map(String, String),
    enrichment           Map(String, String),
    kafka_partition      UInt16,
    kafka_offset         UInt64,
    INDEX kafka_offsets kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(conversion_time)
ORDER BY (conversion_id, version)
TTL toDateTime(conversion_time) + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS rejected_postbacks
(
    request_id     String,
    received_at    DateTime64(3, 'UTC'),
    stage          LowCardinality(String),
    reason         LowCardinality(String),
    detail         String,
    field          Nullable(String),
    http_status    Nullable(UInt16),
    source         LowCardinality(String),
    click_id       Nullable(String),
    method         LowCardinality(Nullable(String)),
    path           Nullable(String),
    query          Nullable(String),
    body           Nullable(String),
    content_type   Nullable(String),
    sender_ip      Nullable(String),
    offer_id       LowCardinality(String),
    publisher_id   LowCardinality(String),
    campaign_id    LowCardinality(String),
    event_name     LowCardinality(Nullable(String)),
    payout         Nullable(Decimal(18, 6)),
    revenue        Nullable(Decimal(18, 6)),
    currency       LowCardinality(Nullable(String)),
    conversion_id  Nullable(String),
    kafka_partition UInt16,
    kafka_offset   UInt64,
    INDEX kafka_offsets kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (toStartOfHour(received_at), reason, request_id)
TTL toDateTime(received_at) + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS duplicate_postbacks
(
    request_id     String,
    received_at    DateTime64(3, 'UTC'),
    source         LowCardinality(String),
    click_id       String,
    conversion_id  String,
    dedup_key      String,
    reason         LowCardinality(String),
    status         LowCardinality(Nullable(String)),
    current_status LowCardinality(Nullable(String)),
    event_name     LowCardinality(Nullable(String)),
    offer_id       LowCardinality(String),
    publisher_id   LowCardinality(String),
    payout         Nullable(Decimal(18, 6)),
    revenue        Nullable(Decimal(18, 6)),
    currency       LowCardinality(Nullable(String)),
    kafka_partition UInt16,
    kafka_offset   UInt64,
    INDEX kafka_offsets kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (toStartOfHour(received_at), reason, request_id)
TTL toDateTime(received_at) + INTERVAL {raw_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
