"""Shared fixtures: one real broker per test session, fresh topics per test, real service processes.

The broker is Apache Kafka (KRaft, one node) started by the project's own launcher
(commands.local.broker), unless KAFKA_BOOTSTRAP_SERVERS points at a cluster (then that one
is used and nothing starts).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.local.broker import LocalKafka
from postbacks.settings import Settings
from tests.helpers import IngestProcess, create_topics


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def pipeline_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own topic prefix (fresh topics) and data dir."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        topic_partitions=3,
        data_dir=tmp_path,
        log_format="text",
    )
    create_topics(settings)
    return settings


@pytest.fixture
def ingest(pipeline_settings: Settings, tmp_path: Path) -> Iterator[IngestProcess]:
    with IngestProcess.start(pipeline_settings, tmp_path) as process:
        yield process


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`docker` tests need a Docker engine; they are skipped only where none answers (e.g. CI here)."""
    docker_items = [item for item in items if item.get_closest_marker("docker")]
    if docker_items and not docker_answers():
        skip = pytest.mark.skip(reason="no Docker engine answers here; these run where one does")
        for item in docker_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one embedded ClickHouse engine of this test process (chDB allows one path per process)."""
    return tmp_path_factory.mktemp("clickhouse")


@pytest.fixture
def clickhouse_db(chdb_path: Path) -> Iterator[Any]:
    """A client on a fresh database of the session's engine, with the pipeline's schema migrated."""
    from sinks.clickhouse import connect
    from sinks.migrate import migrate

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = connect(f"chdb://{chdb_path}")
    admin.command(f"CREATE DATABASE {name}")
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}", database=name)
    migrate(client, raw_ttl_days=3650)
    try:
        yield client
    finally:
        admin.command(f"DROP DATABASE {name} SYNC")
