"""The same schema, writer path and report on a ClickHouse *server* (clickhouse-connect over HTTP).

Runs where a server is reachable: CLICKHOUSE_DSN=http://... pointing at one, or a Docker engine
(testcontainers starts clickhouse/clickhouse-server). Skipped only where neither exists.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.report import refusals_sql, report_sql
from tests.unit.sinks.test_clickhouse_schema import conversion, counted_by_status, insert

pytestmark = pytest.mark.clickhouse_server


@pytest.fixture(scope="module")
def server_dsn() -> Iterator[str]:
    given = os.environ.get("CLICKHOUSE_DSN", "")
    if given.startswith(("http://", "https://")):
        yield given
        return
    from tests.conftest import docker_answers

    if not docker_answers():
        pytest.skip("no ClickHouse server reachable here (set CLICKHOUSE_DSN=http://... or run Docker)")
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer("clickhouse/clickhouse-server:26.8")
        .with_env("CLICKHOUSE_USER", "test")
        .with_env("CLICKHOUSE_PASSWORD", "test")
        .with_env("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "1")
        .with_exposed_ports(8123)
    )
    with container:
        dsn = (
            f"http://test:test@{container.get_container_host_ip()}:{container.get_exposed_port(8123)}/default"
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                connect(dsn).ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield dsn


@pytest.fixture
def server_db(server_dsn: str) -> Iterator[Any]:
    import clickhouse_connect

    admin = connect(server_dsn)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin.command(f"CREATE DATABASE {name}")
    client = clickhouse_connect.get_client(dsn=server_dsn, database=name)
    try:
        yield client
    finally:
        admin.command(f"DROP DATABASE {name} SYNC")


def test_schema_views_and_report_on_a_server(server_db: Any) -> None:
    assert migrate(server_db, 180) == [1, 2]
    assert migrate(server_db, 180) == []
    insert(server_db, "conversion_versions", [conversion(10, "pending", "5")], offset=0)
    insert(server_db, "conversion_versions", [conversion(11, "approved", "7", ("pending", "5"))], offset=1)
    assert counted_by_status(server_db) == [("approved", 1, Decimal("7"))]
    result = server_db.query(report_sql(["day", "offer"], since=datetime(2026, 1, 1, tzinfo=UTC)))
    assert [r[1:4] for r in result.result_rows] == [("o1", 0, 1)]
    server_db.query(refusals_sql())
