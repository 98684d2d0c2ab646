"""`outbound_postbacks` on the real engine: attempts, the hourly view, the sink's identity filter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sinks.tables import SPECS
from sinks.writer import new_rows

OUTBOUND = next(spec for spec in SPECS if spec.name == "outbound_postbacks")
_NOW = datetime.now(UTC).replace(microsecond=0)
# A few minutes ago, but never yesterday: the documented "died today" query filters on today()
# (five minutes back from just after midnight UTC fell on the day before and failed a CI run).
T0 = max(_NOW - timedelta(minutes=5), _NOW.replace(hour=0, minute=0, second=0))
PAGE = Path(__file__).resolve().parents[3] / "docs" / "outbound.md"


def attempt(key: str, n: int, outcome: str, publisher: str = "p1", **fields: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "attempt": n,
        "attempted_at": T0 + timedelta(seconds=n),
        "conversion_id": f"conv-{key}",
        "version": 7,
        "publisher_id": publisher,
        "offer_id": "o1",
        "campaign_id": None,
        "click_id": "c1",
        "event_name": "purchase",
        "status": "approved",
        "method": "GET",
        "url": "https://pub.example/pb?cid=1",
        "http_status": {"delivered": 200, "retry": 503}.get(outcome),
        "latency_ms": 40 if outcome in {"delivered", "retry"} else None,
        "error": None,
        "outcome": outcome,
        "reason": fields.pop("reason", None),
        **fields,
    }


def test_attempts_and_delivery_rates_by_publisher(clickhouse_db: Any) -> None:
    records = [
        attempt("k1", 1, "retry"),
        attempt("k1", 2, "delivered"),
        attempt("k2", 1, "delivered"),
        attempt("k3", 1, "retry", publisher="p2"),
        attempt("k3", 2, "dead", publisher="p2", reason="max_age"),  # a give-up without a request
    ]
    values = OUTBOUND.column_values(0, list(enumerate(records)))
    clickhouse_db.insert(
        "outbound_postbacks", values, column_names=list(OUTBOUND.insert_columns), column_oriented=True
    )
    rates = clickhouse_db.query(
        "SELECT publisher_id, sumIf(attempts, outcome = 'delivered') AS delivered, "
        "sumIf(attempts, outcome = 'dead') AS dead, sum(requests), sum(latency_ms_sum) "
        "FROM outbound_hourly GROUP BY publisher_id ORDER BY publisher_id"
    ).result_rows
    assert [tuple(r) for r in rates] == [("p1", 2, 0, 3, 120), ("p2", 0, 1, 1, 40)]
    [[campaign, reason]] = clickhouse_db.query(
        "SELECT campaign_id, reason FROM outbound_postbacks WHERE idempotency_key = 'k3' AND attempt = 2"
    ).result_rows
    assert (campaign, reason) == ("", "max_age")


def test_a_repeated_attempt_record_is_dropped_by_its_identity() -> None:
    """After a crash the worker records `unknown` for an attempt whose real record may already be out."""
    real = attempt("k1", 1, "delivered")
    repeat = attempt("k1", 1, "unknown", reason="crashed")
    batch = [(10, real), (11, repeat), (12, attempt("k1", 2, "delivered"))]
    assert [offset for offset, _ in new_rows(OUTBOUND, 0, batch, stored=[])] == [10, 12]
    later = [(11, repeat)]
    assert new_rows(OUTBOUND, 0, later, stored=[("k1", 1, 0, 10)]) == []


def test_the_documented_analyst_queries_run(clickhouse_db: Any) -> None:
    """The SQL under docs/outbound.md "What an analyst queries" runs as printed (conversion id filled in)."""
    records = [attempt("k1", 1, "retry"), attempt("k1", 2, "delivered"), attempt("k2", 1, "rejected")]
    records[2].update(outcome="dead", reason="rejected", http_status=404, latency_ms=12)
    values = OUTBOUND.column_values(0, list(enumerate(records)))
    clickhouse_db.insert(
        "outbound_postbacks", values, column_names=list(OUTBOUND.insert_columns), column_oriented=True
    )
    section = PAGE.read_text().split("## What an analyst queries", 1)[1]
    queries = [q for q in re.findall(r"```sql[^\n]*\n(.*?)```", section, re.S)[0].split(";") if q.strip()]
    assert len(queries) == 3
    results = [clickhouse_db.query(q.replace("'…'", "'conv-k1'")).result_rows for q in queries]
    [(publisher, delivered, dead, rate, requests, latency)] = results[0]
    assert (publisher, delivered, dead, rate, requests, latency) == ("p1", 1, 1, 0.5, 3, 31)
    assert [tuple(r) for r in results[1]] == [("p1", "rejected", 404, 1)]
    assert [(r[1], r[5]) for r in results[2]] == [(1, "retry"), (2, "delivered")]
