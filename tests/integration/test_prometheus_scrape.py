"""A real Prometheus server (Debian's package) scrapes `postbacks up` with the shipped alert rules: every
service is up, and its query of the consumer lag answers for the stream, sink and outbound groups."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from commands.local.broker import free_port
from tests.integration.conftest import UpStack
from tests.prometheus_tools import ensure_prometheus

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture
def prometheus(up_stack: UpStack, tmp_path: Path) -> Iterator[str]:
    binary, _ = ensure_prometheus()
    targets = {"ingest": up_stack.ingest, **up_stack.metrics}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "scrape_configs": [
            {"job_name": f"postbacks-{name}", "static_configs": [{"targets": [urlsplit(url).netloc]}]}
            for name, url in sorted(targets.items())
        ],
    }
    shutil.copy(DEPLOY / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://{address}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _until(base: str, promql: str, done: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    result = _query(base, promql)
    while not done(result) and time.monotonic() < deadline:
        time.sleep(1)
        result = _query(base, promql)
    return result


def test_prometheus_scrapes_every_service_and_the_lag_query_answers(prometheus: str) -> None:
    jobs = {"postbacks-ingest", "postbacks-stream", "postbacks-sink", "postbacks-outbound"}
    up = _until(prometheus, "up", lambda r: {s["metric"]["job"] for s in r if s["value"][1] == "1"} == jobs)
    assert {s["metric"]["job"]: s["value"][1] for s in up} == dict.fromkeys(jobs, "1")

    groups = {"postbacks-stream", "postbacks-sink-clicks", "postbacks-outbound"}
    lag = _until(
        prometheus,
        "postbacks_consumer_lag_records",
        lambda r: groups <= {s["metric"]["group"] for s in r},
    )
    assert groups <= {s["metric"]["group"] for s in lag}, lag
    assert all(float(s["value"][1]) >= 0 for s in lag)
    # Three clicks went in: once the sink has them, its clicks group has nothing left to read.
    drained = _until(
        prometheus,
        'sum(postbacks_consumer_lag_records{group="postbacks-sink-clicks"})',
        lambda r: r and r[0]["value"][1] == "0",
    )
    assert drained and drained[0]["value"][1] == "0", drained
    inserted = _until(
        prometheus,
        'sum(postbacks_sink_records_total{table="clicks",outcome="inserted"})',
        lambda r: r and r[0]["value"][1] == "3",
    )
    assert inserted and inserted[0]["value"][1] == "3", inserted

    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert len(loaded) == 7 and set(loaded.values()) == {"ok"}, loaded
    firing = _query(prometheus, 'ALERTS{alertstate="firing"}')
    assert firing == [], firing  # a healthy stack raises nothing
