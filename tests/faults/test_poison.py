"""Poison messages on the stream's input topics go to the dead-letter topic; the worker goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import DEAD_LETTER, POSTBACK_RAW
from tests.helpers import StreamWorker, read_topic
from tests.integration.stream_scenario import build, collect
from tests.integration.test_stream import STREAM_ENV, send, send_late_clicks

pytestmark = [pytest.mark.integration, pytest.mark.faults]

POISON = [
    (b"\x00\x01garbage", [("schema", POSTBACK_RAW.encode()), ("schema-version", b"1")]),  # not Avro
    (b"{}", [("schema", POSTBACK_RAW.encode()), ("schema-version", b"99")]),  # unknown version
    (b"hello", [("schema", b"no_such_schema")]),  # unknown schema
    (b"hello", []),  # no header at all
]


async def publish_poison(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value, headers in POISON:
            await producer.send_and_wait(
                Topics(settings.topic_prefix).postbacks_raw, value, key=b"p", headers=headers
            )
    finally:
        await producer.stop()


def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    worker = StreamWorker.for_settings(pipeline_settings, tmp_path, **STREAM_ENV).start()
    try:
        asyncio.run(publish_poison(pipeline_settings))
        scenario = build()  # real traffic after the poison: must come out exactly
        send(pipeline_settings, scenario)
        send_late_clicks(pipeline_settings, scenario)
        assert collect(pipeline_settings, expect=len(scenario.expected)) == sorted(scenario.expected)
        dead = read_topic(
            pipeline_settings,
            Topics(pipeline_settings.topic_prefix).dead_letter,
            DEAD_LETTER,
            expect=len(POISON),
        )
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
    assert sorted(d["value"] for d in dead) == sorted(v for v, _ in POISON)
    assert all(d["error"] for d in dead)
    assert worker.log_path.read_text().count("Worker ready") == 1  # never restarted, never crash-looped
