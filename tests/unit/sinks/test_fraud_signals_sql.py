"""Fraud signals in ClickHouse (chDB): the stream's flags counted, cross-click signals computed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from tests.unit.sinks.test_clickhouse_schema import T0, conversion, insert


def click(click_id: str, ip: str, after_s: int) -> dict[str, Any]:
    return {
        "click_id": click_id, "clicked_at": T0 + timedelta(seconds=after_s), "offer_id": "o1",
        "publisher_id": "p1", "campaign_id": "cmp", "ip": ip, "country_code": "DE",
    }  # fmt: skip


def converted(
    cid: str, click_id: str, ip: str, click_s: int, gaid: str | None, **more: Any
) -> dict[str, Any]:
    record = conversion(1, "approved", "2")
    record.update(
        conversion_id=cid, request_id=f"r-{cid}", click_id=click_id, click_ip=ip, gaid=gaid,
        click_time=T0 + timedelta(seconds=click_s),
        conversion_time=T0 + timedelta(seconds=click_s + 600), **more,
    )  # fmt: skip
    return record


def test_flags_count_at_the_latest_status_and_cross_click_signals(clickhouse_db: Any) -> None:
    # Five clicks from one IP within a minute on o1 (a flood above 3 a minute), one from another IP.
    insert(clickhouse_db, "clicks", [click(f"f{i}", "203.0.113.5", i) for i in range(5)])
    insert(clickhouse_db, "clicks", [click("b1", "198.51.100.7", 10), click("b2", "198.51.100.7", 3600)], 10)
    flagged = converted(
        "k3", "b2", "198.51.100.7", 3600, "G2", enrichment={"fraud_flags": "country_mismatch"}
    )
    chargeback = {
        **flagged,
        "version": 2,
        "status": "rejected",
        "previous_status": "approved",
        "previous_version": 1,
        "previous_revenue_usd": Decimal(2),
        "previous_payout_usd": Decimal(1),
        "request_id": "r-k3-2",
    }
    insert(
        clickhouse_db,
        "conversion_versions",
        [
            converted("k1", "f0", "203.0.113.5", 0, "G1"),  # on a flooded click
            converted("k2", "b1", "198.51.100.7", 10, "G1"),  # the same device on another click: reinstall
            flagged,
            chargeback,
        ],
    )
    signals = dict(
        clickhouse_db.query(
            "SELECT conversion_id, signals FROM fraud_signals(click_flood_per_minute = 3) "
            "ORDER BY conversion_id"
        ).result_rows
    )
    assert signals == {"k1": ["click_flood"], "k2": ["reinstall"], "k3": ["country_mismatch"]}
    relaxed = clickhouse_db.query(
        "SELECT conversion_id FROM fraud_signals(click_flood_per_minute = 5) "
        "WHERE has(signals, 'click_flood')"
    ).result_rows
    assert relaxed == []  # five clicks are not more than five
    flags = clickhouse_db.query(
        "SELECT flag, status, sum(conversions), sum(revenue_usd) FROM fraud_flags_hourly "
        "GROUP BY flag, status HAVING sum(conversions) != 0 ORDER BY status"
    ).result_rows
    assert flags == [("country_mismatch", "rejected", 1, Decimal("2"))]  # counted once, at its latest status
    hourly = clickhouse_db.query(
        "SELECT signal, sum(conversions) FROM fraud_signals_hourly(click_flood_per_minute = 3) "
        "GROUP BY signal ORDER BY signal"
    ).result_rows
    assert hourly == [("click_flood", 1), ("country_mismatch", 1), ("reinstall", 1)]


def test_the_refusals_report_counts_flagged_conversions(clickhouse_db: Any) -> None:
    from sinks.report import refusals_sql

    flagged = converted(
        "k9", "b9", "198.51.100.7", 0, None, enrichment={"fraud_flags": "ctit_long,country_mismatch"}
    )
    insert(clickhouse_db, "conversion_versions", [flagged, converted("k8", "b8", "198.51.100.7", 0, None)])
    rows = clickhouse_db.query(refusals_sql()).result_rows
    assert sorted(rows) == [
        ("flagged", "stream", "country_mismatch", 1),
        ("flagged", "stream", "ctit_long", 1),
    ]
