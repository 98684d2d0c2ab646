"""docker-compose.yml cannot run here (no Docker engine); keep it correct by checking its wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from ingest.sources import load_sources
from outbound.config import load_publishers
from postbacks.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SETTINGS_VARS = {row["env"] for row in (f.metadata for f in Settings.__dataclass_fields__.values())}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_services_present_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "clickhouse", "topics", "ingest", "stream", "sink", "outbound"} <= services.keys()
    for name in ("kafka", "clickhouse", "ingest"):
        assert "healthcheck" in services[name], name


def test_pipeline_env_uses_only_known_settings(compose: dict[str, Any]) -> None:
    for name in ("topics", "ingest", "stream", "sink", "outbound"):
        env = compose["services"][name]["environment"]
        unknown = set(env) - SETTINGS_VARS
        assert not unknown, f"{name}: {unknown}"
        Settings.from_env({k: str(v) for k, v in env.items()})  # parses


def test_kafka_bootstrap_matches_the_advertised_listener(compose: dict[str, Any]) -> None:
    kafka_env = compose["services"]["kafka"]["environment"]
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("//", 1)[1]
    for name in ("topics", "ingest", "stream", "sink", "outbound"):
        assert compose["services"][name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == advertised
    # The stream keeps RocksDB state across container restarts; every service waits for the topics.
    assert any(v.endswith(":/tmp/postbacks") for v in compose["services"]["stream"]["volumes"])
    for name in ("ingest", "stream", "sink", "outbound"):
        assert (
            compose["services"][name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        )
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics are created explicitly
    topics_env = compose["services"]["topics"]["environment"]
    assert kafka_env["KAFKA_NUM_PARTITIONS"] == topics_env["TOPIC_PARTITIONS"]


def test_clickhouse_dsn_points_at_the_clickhouse_service(compose: dict[str, Any]) -> None:
    ch = compose["services"]["clickhouse"]["environment"]
    dsn = urlparse(compose["services"]["sink"]["environment"]["CLICKHOUSE_DSN"])
    assert compose["services"]["sink"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert (dsn.hostname, dsn.port) == ("clickhouse", 8123)
    assert (dsn.username, dsn.password, dsn.path.strip("/")) == (
        ch["CLICKHOUSE_USER"],
        ch["CLICKHOUSE_PASSWORD"],
        ch["CLICKHOUSE_DB"],
    )


def test_ingest_port_sources_file_and_ordering(compose: dict[str, Any]) -> None:
    ingest = compose["services"]["ingest"]
    env = ingest["environment"]
    assert f"{env['INGEST_PORT']}:{env['INGEST_PORT']}" in ingest["ports"]
    assert env["INGEST_HOST"] == "0.0.0.0"
    host_dir, container_dir = ingest["volumes"][0].split(":")[:2]
    sources = Path(env["SOURCES_FILE"])
    assert sources.parent == Path(container_dir)
    load_sources(REPO / host_dir / sources.name)  # the mounted file exists and is valid
    assert ingest["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert env["INGEST_PORT"] in " ".join(ingest["healthcheck"]["test"])
    assert (REPO / "Dockerfile").exists()


def test_outbound_reads_the_mounted_sources_file_and_its_publishers(compose: dict[str, Any]) -> None:
    outbound = compose["services"]["outbound"]
    host_dir, container_dir = outbound["volumes"][0].split(":")[:2]
    sources = Path(outbound["environment"]["SOURCES_FILE"])
    assert sources.parent == Path(container_dir)
    publishers = load_publishers(REPO / host_dir / sources.name)  # every template valid
    assert publishers, "the example sources file shows a publisher"
