"""One `postbacks up` shared by the tests of the operators' and analysts' tools (SQL endpoint clients,
Prometheus scraping): starting a stack costs a broker, four services and the engine's migrations."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from commands.local.broker import free_port
from tests.helpers import REPO


@dataclass
class UpStack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    banner: str
    ingest: str
    url: str  # the SQL endpoint
    user: str
    password: str
    port: int
    metrics: dict[str, str]  # service -> its /metrics URL, as printed
    out: Path  # everything `up` printed, growing while it runs


@contextmanager
def running_up(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[UpStack]:
    """`postbacks up` on free ports in `tmp`, until the block ends (then Ctrl-C, as a user stops it)."""
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX"}}
    port = free_port()
    env.update(
        POSTBACKS_DATA_DIR=str(tmp / "data"),
        INGEST_PORT=str(free_port()),
        CLICKHOUSE_HTTP_PORT=str(port),
        STREAM_METRICS_PORT=str(free_port()),
        SINK_METRICS_PORT=str(free_port()),
        OUTBOUND_METRICS_PORT=str(free_port()),
        LOG_FORMAT="text",
        SINK_MAX_AGE_MS="200",
        **(extra_env or {}),
    )
    out = tmp / "up.out"
    with out.open("wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", "up"],
            env=env,
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "is up" not in out.read_text() and time.monotonic() < deadline:
            assert up.poll() is None, out.read_text()
            time.sleep(0.2)
        banner = out.read_text()
        sql = re.search(r"^\s+sql\s+(\S+).*\n\s+user (\S+)\s+password (\S+)", banner, re.MULTILINE)
        assert sql, banner
        ingest = re.search(r"^\s+ingest\s+(\S+)", banner, re.MULTILINE)
        assert ingest, banner
        metrics = dict(re.findall(r"(\w+) (http://\S+/metrics)", banner))
        yield UpStack(
            up, env, banner, ingest.group(1), sql.group(1), sql.group(2), sql.group(3), port, metrics, out
        )
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(45)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


@pytest.fixture(scope="session")
def up_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    """`postbacks up` on free ports, with three clicks (offers o1, o1, o2) sent through its ingest."""
    with running_up(tmp_path_factory.mktemp("up-tools")) as stack:
        for i in range(3):
            offer = "o1" if i < 2 else "o2"
            response = httpx.get(
                f"{stack.ingest}/click", params={"offer_id": offer, "publisher_id": "p1", "format": "json"}
            )
            assert response.status_code == 200, response.text
        yield stack
