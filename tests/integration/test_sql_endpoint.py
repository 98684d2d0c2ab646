"""Analysts' own tools against `postbacks up`: clickhouse-connect, curl and the ClickHouse JDBC driver
(from Maven Central, compiled and run here) query the embedded engine through the sink's ClickHouse
HTTP interface, get the same numbers as `postbacks report`, and cannot write."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import clickhouse_connect
import httpx
import pytest

from commands.local.kafka_install import cache_root
from sinks.report import report_sql
from tests.helpers import REPO
from tests.integration.conftest import UpStack

pytestmark = pytest.mark.integration

JDBC_DIR = Path(__file__).parent / "jdbc"
REPORT = report_sql(["offer"])


def _client(up_stack: UpStack) -> clickhouse_connect.driver.client.Client:
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=up_stack.port, username=up_stack.user, password=up_stack.password
    )


def _report_rows(up_stack: UpStack) -> list[tuple[object, ...]]:
    """The report by offer once the sink has written the three clicks."""
    client = _client(up_stack)
    deadline = time.monotonic() + 60
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        rows = [tuple(r) for r in client.query(REPORT).result_rows]
        if sum(int(r[1]) for r in rows) == 3:  # type: ignore[call-overload]
            return rows
        time.sleep(0.3)
    raise AssertionError(rows)


def test_up_prints_the_endpoint_with_the_sources_file_credentials(up_stack: UpStack) -> None:
    assert up_stack.url == f"http://127.0.0.1:{up_stack.port}"
    sources = tomllib.loads((Path(up_stack.env["POSTBACKS_DATA_DIR"]) / "sources.toml").read_text())
    assert (up_stack.user, up_stack.password) == (sources["sql"]["user"], sources["sql"]["password"])


def test_clickhouse_connect(up_stack: UpStack) -> None:
    rows = _report_rows(up_stack)
    assert [(r[0], r[1]) for r in rows] == [("o1", 2), ("o2", 1)]
    client = _client(up_stack)
    frame = client.query_df(REPORT)
    assert list(zip(frame["offer"], frame["clicks"], strict=True)) == [("o1", 2), ("o2", 1)]
    table = client.query_arrow(REPORT)
    assert table.column("clicks").to_pylist() == [2, 1]
    with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError, match="READONLY"):
        client.command("TRUNCATE TABLE clicks")
    # `postbacks sql` is one more client of the same endpoint.
    cli = subprocess.run(
        [sys.executable, "-m", "commands.cli", "sql", "SELECT count() AS n FROM clicks", "--format", "json"],
        env=up_stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(cli.stdout) == [{"n": 3}]


def test_curl(up_stack: UpStack) -> None:
    _report_rows(up_stack)
    curl = shutil.which("curl")
    assert curl, "curl is needed"
    base = [curl, "-sS", "--compressed", "-u", f"{up_stack.user}:{up_stack.password}"]
    out = subprocess.run(
        [*base, "--data-binary", REPORT, f"{up_stack.url}/?default_format=JSONEachRow"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [(r["offer"], r["clicks"]) for r in map(json.loads, out.splitlines())] == [("o1", 2), ("o2", 1)]
    param = subprocess.run(
        [
            *base,
            "-G",
            f"{up_stack.url}/",
            "--data-urlencode",
            "query=SELECT {n:UInt8} * 2",
            "-d",
            "param_n=21",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert param == "42\n"
    refused = subprocess.run(
        [
            curl,
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            f"{up_stack.user}:wrong",
            f"{up_stack.url}/?query=SELECT+1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert refused == "401"


def _jdbc_classpath() -> str:
    """The JDBC driver and its dependencies from Maven Central (once, into the shared cache)."""
    pom = (JDBC_DIR / "pom.xml").read_text()
    version = re.search(r"<clickhouse.jdbc.version>(.+?)<", pom).group(1)  # type: ignore[union-attr]
    libs = cache_root() / f"clickhouse-jdbc-{version}"
    if not (libs / ".complete").exists():
        mvn = shutil.which("mvn")
        assert mvn, "Maven is needed (as for Apache Kafka, README 'Quick start')"
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(JDBC_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ],
            check=True,
            timeout=600,
        )
        (libs / ".complete").touch()
    return str(libs / "*")


@pytest.mark.timeout(900)
def test_jdbc_driver(up_stack: UpStack, tmp_path: Path) -> None:
    rows = _report_rows(up_stack)
    libs = _jdbc_classpath()
    classes = tmp_path / "classes"
    subprocess.run(
        ["javac", "-d", str(classes), "-cp", libs, str(JDBC_DIR / "SqlProbe.java")], check=True, timeout=120
    )
    probe = subprocess.run(
        [
            "java",
            "-cp",
            f"{classes}:{libs}",
            "SqlProbe",
            f"jdbc:clickhouse://127.0.0.1:{up_stack.port}",
            up_stack.user,
            up_stack.password,
            REPORT,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    lines = [line.split("\t") for line in probe.stdout.splitlines()]
    steps = {line[0]: line[1:] for line in lines if line[0] != "row"}
    assert re.match(r"\d+\.\d+", steps["version"][0])
    assert {"clicks", "conversions", "outbound_postbacks"} <= set(steps["tables"][0].split(","))
    assert steps["columns"][:2] == ["offer", "clicks"]
    assert [(line[1], int(line[2])) for line in lines if line[0] == "row"] == [(r[0], r[1]) for r in rows]
    assert steps["refused"] == ["164"]  # DROP TABLE: READONLY, ClickHouse's own code


def test_a_flood_from_one_address_gets_clickhouses_quota_error(up_stack: UpStack) -> None:
    """Under `postbacks up`'s defaults: wrong-password requests (no engine work, so fast enough to
    outrun the refill) empty this address's bucket; then even the right password waits its turn.

    The bucket refills at 20 a second, so whether the right password still finds it empty depends on
    how soon it follows the refusal. Only an attempt that provably came within the refusal's wait
    (measured from before the refused request left to after the next one came back) is judged; a
    slow machine gets more attempts, never a verdict from timing luck."""
    auth = (up_stack.user, up_stack.password)
    judged = 0
    with httpx.Client() as client:
        for _ in range(20):
            statuses: list[int] = []
            for _ in range(400):
                sent = time.monotonic()
                refused = client.get(f"{up_stack.url}/?query=SELECT+1", auth=(up_stack.user, "wrong"))
                statuses.append(refused.status_code)
                if refused.status_code == 429:
                    break
            assert statuses[-1] == 429 and set(statuses) <= {401, 429}, statuses
            assert refused.headers["X-ClickHouse-Exception-Code"] == "201"
            assert "(QUOTA_EXCEEDED)" in refused.text and up_stack.password not in refused.text
            wait = re.search(r"Retry in ([0-9.]+) s", refused.text)
            assert wait is not None, refused.text
            right = client.get(f"{up_stack.url}/?query=SELECT+1", auth=auth)
            if time.monotonic() - sent < float(wait.group(1)) - 0.005:  # the text rounds to 0.01
                assert right.status_code == 429, right.text
                judged += 1
                break
        assert judged == 1, "no attempt came within the refusal's wait"
        time.sleep(int(refused.headers["Retry-After"]))
        assert client.get(f"{up_stack.url}/?query=SELECT+1", auth=auth).text == "1\n"
