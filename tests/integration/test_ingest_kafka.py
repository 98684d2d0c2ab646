"""Ingest against the real broker: a 2xx means the record is in Kafka, readable as Avro."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from postbacks.settings import Settings
from postbacks.topics import Topics, topic_partitions
from schemas import CLICK, POSTBACK_RAW, POSTBACK_REJECTED
from tests.helpers import IngestProcess, read_topic

pytestmark = pytest.mark.integration


async def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def test_acknowledged_postback_is_already_in_kafka(
    ingest: IngestProcess, pipeline_settings: Settings
) -> None:
    topics = Topics(pipeline_settings.topic_prefix)
    params = {
        "clickid": "it-click-1",
        "payout": "1.5",
        "currency": "EUR",
        "event_name": "af_purchase",
        "event_time": "2025-11-20 10:00:00.250",
        "transaction_id": "T-77",
        "advertising_id": "gaid-1",
        "country_code": "de",
        "is_retargeting": "true",
        "event_value": '{"sku":"A1"}',
        "sub5": "keep-me",
        "token": ingest.token,
    }
    response = httpx.get(f"{ingest.base_url}/postback", params=params)
    assert response.status_code == 200, response.text
    # The response came after the broker's ack: the log end offset already counts the record.
    assert asyncio.run(_end_offsets(pipeline_settings.kafka_bootstrap_servers, topics.postbacks_raw)) == 1
    [record] = read_topic(pipeline_settings, topics.postbacks_raw, POSTBACK_RAW, expect=1)
    assert record["_key"] == b"it-click-1"
    assert record["request_id"] == response.json()["request_id"]
    assert (record["click_id"], record["payout"], record["currency"]) == ("it-click-1", Decimal("1.5"), "EUR")
    assert (record["event_name"], record["transaction_id"], record["gaid"]) == (
        "af_purchase",
        "T-77",
        "gaid-1",
    )
    assert record["country_code"] == "DE" and record["is_retargeting"] is True
    assert record["event_time"].isoformat() == "2025-11-20T10:00:00.250000+00:00"
    assert record["event_value"] == '{"sku":"A1"}' and record["extra"] == {"sub5": "keep-me"}
    assert record["source"] == "default" and record["sender_ip"] == "127.0.0.1"


def test_many_concurrent_postbacks_all_land_exactly_as_acknowledged(
    ingest: IngestProcess, pipeline_settings: Settings
) -> None:
    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=ingest.base_url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.get(
                        "/postback", params={"clickid": f"bulk-{i}", "revenue": str(i), "token": ingest.token}
                    )
                    for i in range(300)
                )
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * 300
    topic = Topics(pipeline_settings.topic_prefix).postbacks_raw
    records = read_topic(pipeline_settings, topic, POSTBACK_RAW, expect=300)
    assert sorted(r["click_id"] for r in records) == sorted(f"bulk-{i}" for i in range(300))
    assert sum(r["revenue"] for r in records) == sum(range(300))
    # Each in the partition any Kafka client's default partitioner gives its key (the clicks of
    # that click id are there too: the stream joins them per partition).
    partitions = sorted({r["_at"][0] for r in records} | set(range(pipeline_settings.topic_partitions)))
    for r in records:
        assert r["_at"][0] == DefaultPartitioner()(r["_key"], partitions, partitions), r["_key"]


def test_a_keys_postbacks_keep_their_order(ingest: IngestProcess, pipeline_settings: Settings) -> None:
    """Ten keys, each sending its postbacks one after the other (all keys at once): in Kafka, each
    key's records are in the order they were acknowledged."""

    async def send_in_turn(key: int) -> None:
        async with httpx.AsyncClient(base_url=ingest.base_url, timeout=30) as client:
            for n in range(20):
                params = {"clickid": f"order-{key}", "transaction_id": str(n), "token": ingest.token}
                assert (await client.get("/postback", params=params)).status_code == 200

    async def send_all() -> None:
        await asyncio.gather(*(send_in_turn(key) for key in range(10)))

    asyncio.run(send_all())
    topic = Topics(pipeline_settings.topic_prefix).postbacks_raw
    records = sorted(read_topic(pipeline_settings, topic, POSTBACK_RAW, expect=200), key=lambda r: r["_at"])
    for key in range(10):
        sent = [r["transaction_id"] for r in records if r["click_id"] == f"order-{key}"]
        assert sent == [str(n) for n in range(20)]


def test_clicks_and_rejections_reach_their_topics(ingest: IngestProcess, pipeline_settings: Settings) -> None:
    topics = Topics(pipeline_settings.topic_prefix)
    click = httpx.get(
        f"{ingest.base_url}/click",
        params={"offer_id": "o1", "publisher_id": "p1", "sub2": "s2", "format": "json"},
        headers={"user-agent": "UA/2"},
    )
    assert click.status_code == 200
    bad = httpx.get(
        f"{ingest.base_url}/postback", params={"clickid": "c", "currency": "ZZZ", "token": ingest.token}
    )
    forged = httpx.get(
        f"{ingest.base_url}/postback", params={"clickid": "c", "token": "forged-forged-forged"}
    )
    assert (bad.status_code, bad.json()["reason"]) == (400, "unknown_currency")
    assert (forged.status_code, forged.json()["reason"]) == (403, "auth_failed")

    [stored_click] = read_topic(pipeline_settings, topics.clicks_raw, CLICK, expect=1)
    assert stored_click["click_id"] == click.json()["click_id"] == stored_click["_key"].decode()
    assert (stored_click["offer_id"], stored_click["sub2"], stored_click["user_agent"]) == (
        "o1",
        "s2",
        "UA/2",
    )
    rejected = read_topic(pipeline_settings, topics.postbacks_rejected, POSTBACK_REJECTED, expect=2)
    assert sorted(r["reason"] for r in rejected) == ["auth_failed", "unknown_currency"]
    assert all(
        ingest.token not in (r["query"] or "") and "forged-forged" not in (r["query"] or "") for r in rejected
    )
    assert read_topic(pipeline_settings, topics.postbacks_raw, POSTBACK_RAW, expect=0, timeout_s=1) == []
