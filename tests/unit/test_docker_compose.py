"""docker-compose.yml cannot run here (no Docker engine); keep it correct by checking its wiring."""

from __future__ import annotations

import subprocess
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


def test_prometheus_scrapes_every_service_where_it_serves_metrics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    host_dir, container_dir = prometheus["volumes"][0].split(":")[:2]
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = Path(config_arg.split("=", 1)[1])
    assert config_path.parent == Path(container_dir)
    config = yaml.safe_load((REPO / host_dir / config_path.name).read_text())
    assert (REPO / host_dir / config["rule_files"][0]).exists()  # the alert rules come along
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    expected = {}
    for name in ("ingest", "stream", "sink", "outbound"):
        settings = Settings.from_env({k: str(v) for k, v in services[name]["environment"].items()})
        port = settings.ingest_port if name == "ingest" else getattr(settings, f"{name}_metrics_port")
        if name != "ingest":
            assert settings.metrics_host == "0.0.0.0", name  # reachable from the prometheus container
        expected[f"postbacks-{name}"] = f"{name}:{port}"
    assert targets == expected
    assert services["ingest"]["environment"]["INGEST_HOST"] == "0.0.0.0"


def test_grafana_gets_the_plugin_its_data_sources_and_dashboards(compose: dict[str, Any]) -> None:
    services = compose["services"]
    grafana = services["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"].split(",")
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text())
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == dashboards_dir
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "deploy/grafana/dashboards" / Path(home).name).exists()
    assert Path(home).parent == Path(dashboards_dir)
    sources = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/datasources.yml").read_text())
    by_type = {d["type"]: d for d in sources["datasources"]}
    prom = urlparse(by_type["prometheus"]["url"])
    assert prom.hostname in services and f"{prom.port}:{prom.port}" in services[prom.hostname]["ports"]
    ch = by_type["grafana-clickhouse-datasource"]
    ch_env = services["clickhouse"]["environment"]
    assert ch["jsonData"]["host"] in services and ch["jsonData"]["port"] == 8123
    assert ch["jsonData"]["protocol"] == "http"
    assert (
        ch["jsonData"]["username"],
        ch["secureJsonData"]["password"],
        ch["jsonData"]["defaultDatabase"],
    ) == (
        ch_env["CLICKHOUSE_USER"],
        ch_env["CLICKHOUSE_PASSWORD"],
        ch_env["CLICKHOUSE_DB"],
    )
    assert grafana["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert "prometheus" in grafana["depends_on"]


def test_the_docker_prometheus_config_passes_promtool() -> None:
    from tests.prometheus_tools import ensure_prometheus

    _, promtool = ensure_prometheus()
    check = subprocess.run(
        [promtool, "check", "config", "prometheus.docker.yml"],
        cwd=REPO / "deploy" / "prometheus",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_image_holds_every_package_a_compose_service_runs(compose: dict[str, Any]) -> None:
    """Each service's `postbacks <command>` imports its package: the Dockerfile must copy it."""
    copied = {
        line.split()[1]
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and len(line.split()) == 3
    }
    needed = {"postbacks", "schemas", "ingest", "stream", "sinks", "outbound"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
