"""The ClickHouse schema on the real engine (chDB in-process): migrations, views, report SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sinks.migrate import migrate, migrations
from sinks.report import refusals_sql, report_sql
from sinks.tables import SPECS

T0 = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
BY_NAME = {spec.name: spec for spec in SPECS}


def insert(client: Any, table: str, records: list[dict[str, Any]], offset: int = 0) -> None:
    spec = BY_NAME[table]
    values = spec.column_values(0, [(offset + i, r) for i, r in enumerate(records)])
    client.insert(table, values, column_names=list(spec.insert_columns), column_oriented=True)


def conversion(
    version: int, status: str, revenue: str, previous: tuple[str, str] | None = None
) -> dict[str, Any]:
    return {
        "conversion_id": "conv-1",
        "version": version,
        "status": status,
        "previous_status": previous[0] if previous else None,
        "previous_version": version - 1 if previous else None,
        "previous_revenue_usd": Decimal(previous[1]) if previous else None,
        "previous_payout_usd": Decimal(1) if previous else None,
        "dedup_key": "click|install",
        "request_id": f"r{version}",
        "received_at": T0,
        "source": "default",
        "click_id": "c1",
        "event_name": "install",
        "is_install": True,
        "conversion_time": T0,
        "click_time": T0,
        "click_to_conversion_s": 60,
        "ctit_long": False,
        "offer_id": "o1",
        "publisher_id": "p1",
        "campaign_id": "cmp",
        "revenue_usd": Decimal(revenue),
        "payout_usd": Decimal(1),
        "country_code": "DE",
        "extra": {},
        "enrichment": {},
    }


def test_migrations_are_idempotent_and_recorded(clickhouse_db: Any) -> None:
    assert migrate(clickhouse_db, 3650) == []  # the fixture already applied them
    recorded = [
        r[0]
        for r in clickhouse_db.query("SELECT version FROM schema_migrations ORDER BY version").result_rows
    ]
    assert recorded == [v for v, _, _ in migrations()]
    tables = {r[0] for r in clickhouse_db.query("SHOW TABLES").result_rows}
    assert {
        "clicks",
        "conversion_versions",
        "conversions",
        "rejected_postbacks",
        "duplicate_postbacks",
        "clicks_hourly",
        "conversions_hourly",
        "rejections_hourly",
        "duplicates_hourly",
    } <= tables


def counted_by_status(client: Any) -> list[tuple[Any, ...]]:
    return list(
        client.query(
            "SELECT status, sum(conversions), sum(revenue_usd) FROM conversions_hourly GROUP BY status "
            "HAVING sum(conversions) != 0 ORDER BY status"
        ).result_rows
    )


def test_status_updates_count_once_at_the_latest_status(clickhouse_db: Any) -> None:
    insert(clickhouse_db, "conversion_versions", [conversion(10, "pending", "5")], offset=0)
    insert(
        clickhouse_db, "conversion_versions", [conversion(11, "approved", "7", ("pending", "5"))], offset=1
    )
    assert counted_by_status(clickhouse_db) == [("approved", 1, Decimal("7"))]
    insert(
        clickhouse_db, "conversion_versions", [conversion(12, "rejected", "7", ("approved", "7"))], offset=2
    )
    assert counted_by_status(clickhouse_db) == [("rejected", 1, Decimal("7"))]
    latest = clickhouse_db.query("SELECT status, version FROM conversions FINAL").result_rows
    assert latest == [("rejected", 12)]
    assert clickhouse_db.query("SELECT count() FROM conversion_versions").result_rows == [(3,)]


def test_report_and_refusals_sql_run_and_add_up(clickhouse_db: Any) -> None:
    clicks = [
        {
            "click_id": f"k{i}",
            "clicked_at": T0,
            "offer_id": "o1",
            "publisher_id": "p1",
            "campaign_id": "cmp",
            "ip": "1.1.1.1",
            "extra": {},
        }
        for i in range(4)
    ]
    insert(clickhouse_db, "clicks", clicks)
    insert(clickhouse_db, "conversion_versions", [conversion(1, "approved", "8")])
    insert(
        clickhouse_db,
        "rejected_postbacks",
        [
            {
                "request_id": "x1",
                "received_at": T0,
                "stage": "ingest",
                "reason": "bad_number",
                "detail": "d",
                "source": "default",
            },
            {
                "request_id": "x2",
                "received_at": T0,
                "stage": "stream",
                "reason": "ctit_too_short",
                "detail": "d",
                "source": "default",
                "offer_id": "o1",
            },
        ],
    )
    result = clickhouse_db.query(report_sql(["day", "campaign", "publisher"], since=datetime(2026, 11, 20)))
    [row] = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    assert (row["clicks"], row["conversions"], row["revenue_usd"]) == (4, 1, Decimal("8"))
    assert (row["cr"], row["epc"]) == (0.25, 2.0)
    assert clickhouse_db.query(report_sql(["day"], until=datetime(2026, 11, 20))).result_rows == []
    refusals = clickhouse_db.query(refusals_sql()).result_rows
    assert refusals == [("rejected", "ingest", "bad_number", 1), ("rejected", "stream", "ctit_too_short", 1)]


def test_the_report_splits_click_and_view_through_conversions(clickhouse_db: Any) -> None:
    """Migration 0005: attribution_type in the tables and the hourly aggregate; a record without it
    (written before conversion.v2) is a click conversion."""
    click = {"click_id": "k1", "clicked_at": T0, "offer_id": "o1", "publisher_id": "p1", "ip": "1.1.1.1"}
    insert(clickhouse_db, "clicks", [{**click, "campaign_id": "cmp", "extra": {}}])
    by_view = {**conversion(2, "approved", "5"), "conversion_id": "conv-2", "attribution_type": "view"}
    insert(
        clickhouse_db,
        "conversion_versions",
        [conversion(1, "approved", "8"), {**by_view, "impression_id": "i1"}],
    )
    result = clickhouse_db.query(report_sql(["offer", "attribution"]))
    rows = {r[1]: dict(zip(result.column_names, r, strict=True)) for r in result.result_rows}
    assert (rows["click"]["clicks"], rows["click"]["conversions"], rows["click"]["revenue_usd"]) == (
        1,
        1,
        Decimal("8"),
    )
    assert (rows["view"]["clicks"], rows["view"]["conversions"], rows["view"]["revenue_usd"]) == (
        0,
        1,
        Decimal("5"),
    )
    stored = clickhouse_db.query(
        "SELECT conversion_id, attribution_type, impression_id FROM conversions FINAL ORDER BY conversion_id"
    ).result_rows
    assert stored == [("conv-1", "click", None), ("conv-2", "view", "i1")]
