"""Installing and configuring the local Apache Kafka: versions, errors that name what failed, node config."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from commands.local import kafka_install
from commands.local.broker import KafkaNode, new_cluster_id, node_properties
from commands.local.kafka_install import KafkaInstallError, kafka_version, parse_java_major


def test_the_pom_names_a_kafka_4_version() -> None:
    assert re.fullmatch(r"4\.\d+\.\d+", kafka_version())


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
    ],
)
def test_java_versions_are_read_from_java_version_output(output: str, major: int) -> None:
    assert parse_java_major(output) == major


def test_unreadable_java_version_says_what_it_read() -> None:
    with pytest.raises(KafkaInstallError, match="cannot read a Java version"):
        parse_java_major("command not found")


def test_missing_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(KafkaInstallError, match="no Java found"):
        kafka_install.java_binary()


def test_missing_maven_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSTBACKS_CACHE_DIR", str(tmp_path))  # nothing installed there
    real_which = shutil.which
    monkeypatch.setattr(
        kafka_install.shutil, "which", lambda name: None if name == "mvn" else real_which(name)
    )
    with pytest.raises(KafkaInstallError, match="no `mvn` on PATH"):
        kafka_install.install(say=lambda _: None)
    assert not list(tmp_path.iterdir()), "nothing half-installed is left behind"


def test_a_failing_maven_run_names_its_command_and_leaves_no_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A pom Maven cannot resolve (as when Maven Central is unreachable): the command and its output."""
    pom = tmp_path / "pom.xml"
    pom.write_text(
        kafka_install.pom_path()
        .read_text()
        .replace(f"<kafka.version>{kafka_version()}</kafka.version>", "<kafka.version>4.0.0</kafka.version>")
        .replace("<artifactId>kafka_2.13</artifactId>", "<artifactId>no-such-artifact-postbacks</artifactId>")
    )
    cache = tmp_path / "cache"
    monkeypatch.setenv("POSTBACKS_CACHE_DIR", str(cache))
    monkeypatch.setattr(kafka_install, "pom_path", lambda: pom)
    with pytest.raises(KafkaInstallError, match=r"`.*mvn .*dependency:copy-dependencies.*` exited [1-9]"):
        kafka_install.install(say=lambda _: None)
    assert kafka_install.installed() is None
    assert [p.name for p in cache.iterdir()] == []


def test_cluster_ids_are_what_kafka_storage_accepts() -> None:
    ids = {new_cluster_id() for _ in range(2000)}  # about 31 would start with "-" if not avoided
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_node_properties_follow_the_cluster_size(tmp_path: Path) -> None:
    node = KafkaNode(2, "127.0.0.1", 19092, 19093, tmp_path)

    def props(nodes: int) -> dict[str, str]:
        text = node_properties(node, "1@127.0.0.1:1,2@127.0.0.1:19093", nodes)
        return dict(line.split("=", 1) for line in text.splitlines())

    one, three = props(1), props(3)
    assert one["node.id"] == "2" and one["process.roles"] == "broker,controller"
    assert one["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert one["log.dirs"] == str(tmp_path / "data")
    assert (one["default.replication.factor"], one["min.insync.replicas"]) == ("1", "1")
    assert (three["default.replication.factor"], three["min.insync.replicas"]) == ("3", "2")
    assert three["offsets.topic.replication.factor"] == "3"
    assert three["transaction.state.log.min.isr"] == "2"
    assert one["auto.create.topics.enable"] == "false"
