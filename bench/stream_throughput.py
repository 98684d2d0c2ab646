"""Stream throughput: one worker (dedup + attribution + enrichment) against a raw consume loop.

Preloads clicks and postbacks (10% sender retries) into the embedded broker, then, in
the same run and on the same topics:
  baseline  a raw aiokafka consumer that reads every record and Avro-decodes it
  stream    `postbacks stream`, timed from "Worker ready" until every postback has an output

    python -m bench.stream_throughput [--clicks 20000] [--partitions 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from postbacks.local.broker import EmbeddedBroker
from postbacks.settings import Settings
from postbacks.topics import Topics, ensure_topics
from schemas import CLICK, POSTBACK_RAW, Codec


def records(n_clicks: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = int(time.time() * 1000)
    clicks, postbacks = [], []
    for i in range(n_clicks):
        click_id = uuid.uuid4().hex
        clicks.append(
            {
                "click_id": click_id,
                "clicked_at": now - 3_600_000,
                "offer_id": f"o{i % 50}",
                "publisher_id": f"p{i % 200}",
                "campaign_id": f"c{i % 20}",
                "ip": "198.51.100.7",
                "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148",
                "extra": {},
            }
        )
        postback = {
            "request_id": uuid.uuid4().hex,
            "received_at": now,
            "source": "default",
            "method": "GET",
            "click_id": click_id,
            "sender_ip": "203.0.113.1",
            "extra": {},
            "event_name": "purchase" if i % 3 else None,
            "transaction_id": f"t{i}",
            "event_time": now - 1_800_000,
            "install_time": now - 1_800_000,
            "revenue": Decimal("4.99"),
            "currency": "EUR" if i % 2 else "USD",
            "payout": Decimal("1.2"),
        }
        postbacks.append(postback)
        if i % 10 == 0:
            postbacks.append({**postback, "request_id": uuid.uuid4().hex})  # a sender retry
    return clicks, postbacks


async def preload(bootstrap: str, topic: str, schema: str, items: list[dict[str, Any]]) -> None:
    codec = Codec(schema)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, codec.encode(r), key=r["click_id"].encode(), headers=codec.headers)
            for r in items
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topics: list[str], expect: int) -> float:
    """Events/s of the physical floor: fetch + Avro decode, no processing, no output."""
    codecs = {t: Codec(POSTBACK_RAW if "postbacks" in t else CLICK, millis=True) for t in topics}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, time.perf_counter()
        while seen < expect:
            for tp, messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).items():
                codec = codecs[tp.topic]
                for m in messages:
                    codec.decode(m.value, m.headers)
                seen += len(messages)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: list[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clicks, postbacks = records(args.clicks)
    events = len(clicks) + len(postbacks)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(Path(tmp) / "kafka") as broker:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            data_dir=Path(tmp),
            topic_partitions=args.partitions,
            log_format="text",
            ctit_min_s=0,
        )
        topics = Topics()
        asyncio.run(ensure_topics(settings))
        asyncio.run(preload(broker.bootstrap_servers, topics.clicks_raw, CLICK, clicks))
        asyncio.run(preload(broker.bootstrap_servers, topics.postbacks_raw, POSTBACK_RAW, postbacks))
        print(f"preloaded {len(clicks)} clicks + {len(postbacks)} postbacks", flush=True)

        baseline = asyncio.run(
            raw_consume(broker.bootstrap_servers, [topics.clicks_raw, topics.postbacks_raw], events)
        )
        print(f"baseline  raw consume + Avro decode: {baseline:9.0f} events/s", flush=True)

        log = Path(tmp) / "stream.log"
        env = {**os.environ, **settings.to_env()}
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "postbacks.cli", "stream"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            while "Worker ready" not in log.read_text(errors="replace"):
                if worker.poll() is not None:
                    raise SystemExit(log.read_text())
                time.sleep(0.05)
            started = time.perf_counter()
            profiler = None
            if os.environ.get("BENCH_PROFILE"):  # collapsed stacks of the worker, for README "Benchmarks"
                profiler = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(worker.pid),
                        "--duration",
                        "8",
                        "--format",
                        "raw",
                        "-o",
                        os.environ["BENCH_PROFILE"],
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            outputs = [topics.conversions_attributed, topics.postbacks_duplicates, topics.postbacks_rejected]
            while asyncio.run(end_offsets(broker.bootstrap_servers, outputs)) < len(postbacks):
                time.sleep(0.25)
            elapsed = time.perf_counter() - started
            if profiler is not None:
                profiler.wait(60)
        finally:
            worker.terminate()
            worker.wait(30)
        stream_rate = events / elapsed
        print(
            f"stream    one worker, rocksdb store:  {stream_rate:9.0f} events/s  "
            f"({events} events in {elapsed:.1f}s)",
            flush=True,
        )
        print(f"ratio     stream / baseline = {stream_rate / baseline:.3f}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "baseline_events_per_s": baseline,
                    "stream_events_per_s": stream_rate,
                    "ratio": stream_rate / baseline,
                    "events": events,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
