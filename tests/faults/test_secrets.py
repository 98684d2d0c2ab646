"""No credential is kept anywhere: logs, metrics, any Kafka topic, any ClickHouse table.

Real ingest, stream worker and sink. Requests carry tokens, HMAC signatures and forged
credentials in every place a sender can put them (query, form body, JSON body, odd
spellings of the parameter name, the wrong source, the path), some accepted and some
refused. Then every byte the pipeline kept is searched for every secret.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from ingest.auth import sign
from postbacks.settings import Settings
from postbacks.topics import topic_partitions
from tests.faults.driver import pipeline

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(180)]

TOKEN = "tok-A1b2C3d4E5f6G7h8I9j0"
LAN_TOKEN = "lan-Z9y8X7w6V5u4T3s2R1q0"
HMAC_KEY = "key-Q1w2E3r4T5y6U7i8O9p0"
FORGED = "forged-M1n2B3v4C5x6Z7l8"

SOURCES = f"""
default_source = "default"
trusted_proxies = []

[sources.default]
auth = "token"
tokens = ["{TOKEN}"]

[sources.lan]
auth = "token"
tokens = ["{LAN_TOKEN}"]
token_param = "security_token"
allow_ips = ["10.0.0.0/8"]

[sources.signed]
auth = "hmac"
hmac_secrets = ["{HMAC_KEY}"]
"""


def requests(client: httpx.Client, click_id: str) -> tuple[list[tuple[httpx.Request, int]], list[str]]:
    """(request, expected status) pairs, accepted and refused, with secrets wherever a sender may put
    them; and the signatures they carry."""
    now = int(time.time())
    signed = f"clickid={click_id}&event_name=purchase&revenue=3&currency=USD".encode()
    signature = sign(HMAC_KEY, f"{now}.".encode() + signed)
    replayed = sign(HMAC_KEY, f"{now - 3600}.".encode() + signed)  # a captured request, an hour old

    def get(path_and_query: str) -> httpx.Request:
        return client.build_request("GET", path_and_query)

    def post(path: str, body: bytes | str, kind: str = "form", **headers: str) -> httpx.Request:
        content_type = "application/json" if kind == "json" else "application/x-www-form-urlencoded"
        return client.build_request(
            "POST",
            path,
            content=body,
            headers={"content-type": content_type, **{k.replace("_", "-"): v for k, v in headers.items()}},
        )

    c = click_id
    return [
        (get(f"/postback?clickid={c}&payout=2&token={TOKEN}&Token={TOKEN}"), 200),
        (post("/postback", f"clickid={c}&event_name=reg&token={TOKEN}"), 200),
        (post("/postback", f'{{"clickid": "{c}", "event_name": "lvl", "token": "{TOKEN}"}}', "json"), 200),
        (post("/postback/signed", signed, x_timestamp=str(now), x_signature=f"sha256={signature}"), 200),
        # Refused after authenticating, the name encoded: what is stored must still hide the value.
        (get(f"/postback?clickid={c}&payout=lots&tok%65n={TOKEN}"), 400),
        (post("/postback", f'{{"clickid": "x", "currency": "ZZZ", "tok\\u0065n": "{TOKEN}"}}', "json"), 400),
        (get(f"/postback?clickid={c}&payout=1&token={FORGED}"), 403),
        (get(f"/postback?clickid={c}&payout=1&TOKEN={TOKEN}"), 401),  # not the token's parameter
        (get(f"/postback/lan?clickid={c}&security_token={LAN_TOKEN}"), 403),  # not from its allow-list
        (get(f"/postback/{TOKEN}?clickid={c}&token={TOKEN}"), 404),  # the token where the source goes
        (
            post(
                "/postback/signed",
                signed.replace(b"=3", b"=300"),
                x_timestamp=str(now),
                x_signature=signature,
            ),
            403,
        ),
        (post("/postback/signed", signed, x_timestamp=str(now - 3600), x_signature=replayed), 401),
    ], [signature, replayed]


async def every_byte_on_topics(bootstrap: str, prefix: str) -> bytes:
    """Keys, values and headers of every record of every topic of this test, from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix)]
        partitions = await topic_partitions(consumer, *topics)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        chunks: list[bytes] = []
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "topics not read to their end"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    chunks += [r.key or b"", r.value or b"", *(k.encode() + v for k, v in r.headers)]
        return b"\n".join(chunks)
    finally:
        await consumer.stop()


def test_no_secret_is_kept_in_logs_metrics_topics_or_clickhouse(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    sources = tmp_path / "secrets.toml"
    sources.write_text(SOURCES)
    with pipeline(pipeline_settings, tmp_path, SOURCES_FILE=str(sources)) as running:
        sent = []
        with httpx.Client(base_url=running.ingest.base_url, timeout=10) as client:
            click = client.get("/click", params={"offer_id": "o1", "publisher_id": "p1", "format": "json"})
            click_id = click.json()["click_id"]
            planned, signatures = requests(client, click_id)
            for request, want in planned:
                response = client.send(request)
                assert response.status_code == want, (request.url, response.text)
                sent.append(response.status_code)
            metrics = client.get("/metrics").text
        refused = sum(status >= 400 for status in sent)
        deadline = time.monotonic() + 60
        while True:  # everything has reached ClickHouse: the stream's outcomes and the refusals
            [[outcomes, rejected]] = running.sink.query(
                "SELECT (SELECT count() FROM conversion_versions) + (SELECT count() FROM duplicate_postbacks)"
                " + (SELECT count() FROM rejected_postbacks WHERE stage = 'stream'),"
                " (SELECT count() FROM rejected_postbacks WHERE stage = 'ingest')"
            )
            if (int(outcomes), int(rejected)) == (4, refused):
                break
            assert time.monotonic() < deadline, f"stored: {outcomes} outcomes, {rejected} refusals"
            time.sleep(0.5)
        tables = running.sink.query(
            "SELECT database, name FROM system.tables WHERE database = currentDatabase() "
            "AND engine NOT IN ('MaterializedView', 'View')"
        )
        stored = [repr(running.sink.query(f"SELECT * FROM `{db}`.`{name}`")) for db, name in tables]
        queries = [
            q
            for [q] in running.sink.query(
                "SELECT concat(ifNull(query, ''), ifNull(body, '')) FROM rejected_postbacks"
            )
        ]
        logs = {p.name: p.read_text(errors="replace") for p in tmp_path.rglob("*.log")}
        topics = asyncio.run(
            every_byte_on_topics(pipeline_settings.kafka_bootstrap_servers, pipeline_settings.topic_prefix)
        )

    secrets = {"token": TOKEN, "lan token": LAN_TOKEN, "hmac key": HMAC_KEY, "forged token": FORGED}
    secrets |= {f"signature {i}": s for i, s in enumerate(signatures)}
    places = {
        "metrics": metrics,
        "topics": topics.decode("utf-8", "replace"),
        "clickhouse": "\n".join(stored),
        **{f"log {name}": text for name, text in logs.items()},
    }
    found = [
        f"{what} in {place}" for place, text in places.items() for what, s in secrets.items() if s in text
    ]
    assert not found, found
    # The search had something to search: what was refused is stored, secrets replaced.
    assert sum("REDACTED" in q for q in queries) >= 6, queries
    assert {"ingest.log", "stream-worker-0.log", "sink.log"} <= set(logs)
    assert len(tables) >= 8 and len(topics) > 2_000
