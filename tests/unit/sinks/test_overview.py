"""The overview page's server side: its files, and the health it reads from the services' /metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from commands.local.broker import free_port
from sinks.endpoint import QueryEndpoint
from sinks.overview import ASSETS, summarize
from sinks.sql_access import Access

USER, PASSWORD = "analyst", "a-password-of-some-length"

STREAM = """\
# TYPE postbacks_consumer_lag_records gauge
postbacks_consumer_lag_records{group="g-stream",topic="clicks.raw",partition="0"} 5.0
postbacks_consumer_lag_records{group="g-stream",topic="postbacks.raw",partition="1"} 7.0
# TYPE postbacks_consumer_lag_age_seconds gauge
postbacks_consumer_lag_age_seconds 3.2
# TYPE postbacks_stream_held_postbacks gauge
postbacks_stream_held_postbacks 2.0
"""
OUTBOUND = """\
# TYPE postbacks_consumer_lag_records gauge
postbacks_consumer_lag_records{group="g-out",topic="conversions.attributed",partition="0"} 0.0
# TYPE postbacks_consumer_lag_age_seconds gauge
postbacks_consumer_lag_age_seconds 4.9
# TYPE postbacks_outbound_waiting_deliveries gauge
postbacks_outbound_waiting_deliveries{publisher="p1"} 3.0
postbacks_outbound_waiting_deliveries{publisher="p2"} 1.0
# TYPE postbacks_outbound_paused_publishers gauge
postbacks_outbound_paused_publishers 1.0
"""


def test_summarize_sums_lag_per_group_and_says_who_is_down() -> None:
    health = summarize({"ingest": "", "stream": STREAM, "sink": None, "outbound": OUTBOUND})
    assert health["services"] == [
        {"name": "ingest", "up": True},
        {"name": "stream", "up": True},
        {"name": "sink", "up": False},
        {"name": "outbound", "up": True},
    ]
    assert health["lag"] == [{"group": "g-out", "records": 0}, {"group": "g-stream", "records": 12}]
    assert health["lag_age_s"] == 4.9  # the oldest reading
    assert (health["outbound_waiting"], health["paused_publishers"], health["held_postbacks"]) == (4, 1, 2)


def test_summarize_without_answers_knows_nothing() -> None:
    health = summarize({"stream": None})
    assert health["lag"] == [] and health["lag_age_s"] is None and health["outbound_waiting"] is None


@pytest.fixture
def served(chdb_path: Path, clickhouse_db: Any, tmp_path: Path) -> Iterator[str]:
    registry = CollectorRegistry()
    Gauge("postbacks_consumer_lag_records", "lag", ["group", "topic", "partition"], registry=registry).labels(
        "g-sink", "clicks.raw", "0"
    ).set(9)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    urls = {
        "sink": f"http://127.0.0.1:{server.server_port}/metrics",
        "outbound": f"http://127.0.0.1:{free_port()}/metrics",  # nobody there
    }
    loop = asyncio.new_event_loop()
    endpoint = QueryEndpoint(
        f"chdb://{chdb_path}", tmp_path, Access(USER, PASSWORD), port=0, metrics_urls=urls
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(endpoint.start(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{endpoint.port}"
    finally:
        asyncio.run_coroutine_threadsafe(endpoint.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.shutdown()


def test_the_page_and_its_files_are_served_without_data(served: str) -> None:
    assert httpx.get(f"{served}/overview").headers["location"] == "/overview/"
    index = httpx.get(f"{served}/overview/")
    assert index.status_code == 200 and "overview.js" in index.text
    assert index.headers["content-type"].startswith("text/html")
    for name, kind in ASSETS.items():
        response = httpx.get(f"{served}/overview/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind), name
    assert httpx.get(f"{served}/overview/..%2Fendpoint.py").status_code == 404
    assert httpx.get(f"{served}/overview/endpoint.py").status_code == 404


def test_health_needs_the_credentials_and_reads_the_services(served: str) -> None:
    refused = httpx.get(f"{served}/overview/health", auth=(USER, "wrong"))
    assert refused.status_code == 401 and refused.headers["x-clickhouse-exception-code"] == "516"
    health = httpx.get(f"{served}/overview/health", auth=(USER, PASSWORD)).json()
    assert [(s["name"], s["up"]) for s in health["services"]] == [("sink", True), ("outbound", False)]
    assert health["lag"] == [{"group": "g-sink", "records": 9}]
