"""Broker stopped mid-stream: ingest answers 503 + Retry-After, and every 2xx is in Kafka after restart."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from commands.local.broker import LocalKafka
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import POSTBACK_RAW
from tests.helpers import IngestProcess, create_topics, read_topic

pytestmark = pytest.mark.integration


def send_until_accepted(client: httpx.Client, token: str, click_id: str, deadline_s: float) -> int:
    """What a sender does: retry on 5xx until accepted. Returns the number of 503s seen."""
    unavailable = 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            response = client.get("/postback", params={"clickid": click_id, "payout": "1", "token": token})
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return unavailable
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        unavailable += 1
        time.sleep(0.2)
    raise AssertionError(f"{click_id} never accepted")


def test_outage_gives_503_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "kafka").start()
    try:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_partitions=3,
            topic_prefix=f"o{uuid.uuid4().hex[:8]}.",
            data_dir=tmp_path,
            publish_timeout_s=1.5,
        )
        create_topics(settings)
        with (
            IngestProcess.start(settings, tmp_path) as ingest,
            httpx.Client(base_url=ingest.base_url, timeout=10) as client,
        ):
            accepted = [f"before-{i}" for i in range(20)]
            for click_id in accepted:
                assert send_until_accepted(client, ingest.token, click_id, 10) == 0

            broker.stop()  # controlled shutdown
            down = client.get("/postback", params={"clickid": "during", "payout": "1", "token": ingest.token})
            assert down.status_code == 503 and down.json()["reason"] == "kafka_unavailable"
            assert "retry-after" in down.headers
            # Nothing vanished: the refused request was not acknowledged, so the sender still has it.

            broker.start()  # same port, same data dir
            send_until_accepted(client, ingest.token, "during", 60)  # the sender's retry, after the 503
            accepted.append("during")
            accepted += [f"after-{i}" for i in range(20)]
            for click_id in accepted[-20:]:
                send_until_accepted(client, ingest.token, click_id, 30)
        records = read_topic(settings, Topics(settings.topic_prefix).postbacks_raw, POSTBACK_RAW, expect=41)
        got = [r["click_id"] for r in records]
        # Every acknowledged postback is there; a retried one may be there more than once (dedup is
        # the stream's job), but nothing acknowledged is missing.
        assert set(got) == set(accepted)
        assert len(got) >= len(accepted)
    finally:
        broker.stop()
