"""deploy/grafana: every panel's query works against what it will meet.

ClickHouse panels: the SQL, with the ClickHouse plugin's macros expanded as the plugin expands them,
runs through the SQL endpoint on the real schema (chDB, migrated) and answers in the shape the panel
needs. Prometheus panels: each expression parses (promtool, as a recording rule) and names only
metrics the services export. Every panel names a provisioned data source.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.prometheus_tools import ensure_prometheus, exported_metrics, metric_names
from tests.unit.sinks.test_sql_endpoint import AUTH, Running

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
CLICKHOUSE = "grafana-clickhouse-datasource"
PROMETHEUS = "prometheus"


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside collapsed rows


def targets(kind: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard: panel title, panel, target) for every query of a data source type."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if (target.get("datasource") or panel["datasource"])["type"] == kind:
                    found.append((f"{name}: {panel['title']}", panel, target))
    return found


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    """The ClickHouse plugin's macros as it expands them (pkg/macros of grafana/clickhouse-datasource)."""
    lo, hi = f"toDateTime({int(start.timestamp())})", f"toDateTime({int(end.timestamp())})"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} >= {lo} AND {m[1]} <= {hi}", sql)
    sql = re.sub(
        r"\$__timeInterval\(([^)]+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)",
        sql,
    )
    sql = sql.replace("$__fromTime", lo).replace("$__toTime", hi).replace("$__interval_s", str(interval_s))
    assert "$" not in sql, f"a macro this test does not know: {sql}"
    return sql


def test_dashboards_are_the_two_promised_and_query_both_sources() -> None:
    boards = dashboards()
    assert set(boards) == {"business-overview.json", "pipeline-health.json"}
    assert len({b["uid"] for b in boards.values()}) == 2
    assert len(targets(CLICKHOUSE)) >= 10 and len(targets(PROMETHEUS)) >= 10


def test_every_panel_names_a_provisioned_data_source() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    sources = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    assert sources == {"prometheus": PROMETHEUS, "clickhouse": CLICKHOUSE}
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for ds in [
                panel["datasource"],
                *(t.get("datasource") or panel["datasource"] for t in panel["targets"]),
            ]:
                assert sources.get(ds["uid"]) == ds["type"], (name, panel["title"], ds)
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    assert [p["type"] for p in provider["providers"]] == ["file"]


@pytest.fixture
def endpoint(chdb_path: Path, clickhouse_db: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The SQL endpoint on a migrated database holding one row of each kind a panel reads."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    at = f"{hour:%Y-%m-%d %H:%M:%S}"
    clickhouse_db.command(
        f"INSERT INTO clicks (click_id, offer_id, publisher_id, clicked_at) VALUES ('c1', 'o1', 'p1', '{at}')"
    )
    clickhouse_db.command(
        "INSERT INTO conversion_versions (conversion_id, version, status, received_at, conversion_time, "
        "click_time, offer_id, publisher_id, revenue_usd, payout_usd) VALUES "
        f"('v1', 1, 'approved', '{at}', '{at}', '{at}', 'o1', 'p1', 4.5, 1.25)"
    )
    clickhouse_db.command(
        "INSERT INTO outbound_postbacks (idempotency_key, attempt, attempted_at, publisher_id, outcome, "
        f"latency_ms) VALUES ('k1', 1, '{at}', 'p1', 'delivered', 12)"
    )
    clickhouse_db.command(
        "INSERT INTO rejected_postbacks (request_id, received_at, stage, reason) VALUES "
        f"('r1', '{at}', 'ingest', 'bad_number')"
    )
    clickhouse_db.command(
        f"INSERT INTO duplicate_postbacks (request_id, received_at, reason) VALUES ('d1', '{at}', 'same_key')"
    )
    running = Running(chdb_path, tmp_path)
    try:
        yield running.url, clickhouse_db.database
    finally:
        running.stop()


def test_clickhouse_panels_run_on_the_real_schema(endpoint: tuple[str, str]) -> None:
    url, database = endpoint
    end = datetime.now(UTC)
    answers = {}
    for title, _, target in targets(CLICKHOUSE):
        assert target["editorType"] == "sql", title
        sql = expand_macros(target["rawSql"], end - timedelta(hours=24), end, 60)
        response = httpx.post(
            url,
            params={"database": database, "default_format": "JSON"},
            content=sql,
            auth=AUTH,
            timeout=60,
        )
        assert response.status_code == 200, f"{title}: {response.text}"
        result = response.json()
        columns = [(c["name"], c["type"]) for c in result["meta"]]
        if target["queryType"] == "timeSeries":  # Grafana needs a time column first
            assert columns[0][0] == "time" and "DateTime" in columns[0][1], (title, columns)
        assert result["data"], f"{title}: no rows for the test's data"
        answers[title] = result["data"]

    # The business numbers read the rows inserted above.
    def value(panel: str) -> float:
        (row,) = answers[f"business-overview.json: {panel}"]
        (cell,) = row.values()
        return float(cell)

    assert value("Clicks") == 1 and value("Conversions (approved)") == 1 and value("CR") == 1
    assert (value("Revenue"), value("Payout")) == (4.5, 1.25)
    assert value("Outbound delivered") == 1


def test_prometheus_panels_parse_and_name_exported_metrics(tmp_path: Path) -> None:
    _, promtool = ensure_prometheus()
    exported = exported_metrics()
    rules = []
    for i, (title, _, target) in enumerate(targets(PROMETHEUS)):
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
        assert "$" not in expr, title
        used = metric_names(expr)
        assert used <= exported, (title, used - exported)
        assert used or re.search(r"\bup\b", expr), title
        rules.append({"record": f"grafana:panel_{i}", "expr": expr})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
