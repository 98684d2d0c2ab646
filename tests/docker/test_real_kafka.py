"""Ingest against real Apache Kafka in a container: the same code, unchanged, on a real cluster.

Runs only where a Docker engine answers (marked `docker`; skipped elsewhere by conftest).
The whole integration suite can also target any cluster with KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import POSTBACK_RAW
from tests.helpers import IngestProcess, create_topics, read_topic

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def apache_kafka() -> Iterator[str]:
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as container:
        yield container.get_bootstrap_server()


def test_ingest_on_real_kafka(apache_kafka: str, tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers=apache_kafka,
        topic_partitions=3,
        topic_prefix=f"d{uuid.uuid4().hex[:8]}.",
        data_dir=tmp_path,
    )
    create_topics(settings)
    with IngestProcess.start(settings, tmp_path) as ingest:
        response = httpx.get(
            f"{ingest.base_url}/postback", params={"clickid": "real-1", "payout": "2", "token": ingest.token}
        )
        assert response.status_code == 200, response.text
    [record] = read_topic(settings, Topics(settings.topic_prefix).postbacks_raw, POSTBACK_RAW, expect=1)
    assert record["click_id"] == "real-1"
