-- View-through attribution (README "View-through attribution").
-- A conversion is attributed to a click inside its window (`click`) or, with no click known, to an
-- impression of its device inside the offer's view-through window (`view`, with the impression's
-- id). Rows written before this migration were all click-attributed: the default says so.
-- conversions_hourly gains the type in its key (a SummingMergeTree sums what its key does not
-- hold), and its view is re-created to fill it; postbacks report splits by it (`--by attribution`).
-- ClickHouse refuses a new key column with a default, so the default is set by a second ALTER:
-- parts written before have no such column and read it as that default, 'click'.

ALTER TABLE conversion_versions
    ADD COLUMN IF NOT EXISTS attribution_type LowCardinality(String) DEFAULT 'click' AFTER enrichment,
    ADD COLUMN IF NOT EXISTS impression_id Nullable(String) AFTER attribution_type;

ALTER TABLE conversions
    ADD COLUMN IF NOT EXISTS attribution_type LowCardinality(String) DEFAULT 'click' AFTER enrichment,
    ADD COLUMN IF NOT EXISTS impression_id Nullable(String) AFTER attribution_type;

ALTER TABLE conversions_hourly
    ADD COLUMN IF NOT EXISTS attribution_type LowCardinality(String),
    MODIFY ORDER BY (hour, offer_id, campaign_id, publisher_id, country_code, event_name, status, attribution_type);

ALTER TABLE conversions_hourly MODIFY COLUMN attribution_type LowCardinality(String) DEFAULT 'click';

DROP VIEW IF EXISTS conversions_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS conversions_hourly_mv TO conversions_hourly AS
SELECT hour, offer_id, campaign_id, publisher_id, country_code, event_name, change_status AS status,
       attribution_type,
       sum(change_sign) AS conversions, sum(change_revenue) AS revenue_usd, sum(change_payout) AS payout_usd
FROM
(
    SELECT
        toStartOfHour(conversion_time) AS hour, offer_id, campaign_id, publisher_id, country_code, event_name,
        attribution_type,
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
GROUP BY hour, offer_id, campaign_id, publisher_id, country_code, event_name, change_status, attribution_type
