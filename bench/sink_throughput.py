"""Sink throughput: `postbacks sink` (consume, decode, batch, insert) against a raw insert of the same rows.

Preloads clicks into the embedded broker, then in the same run:
  baseline  clickhouse-connect `insert` of the same rows, already in memory, into the same table
            schema (an embedded engine of this process)
  sink      `postbacks sink` in its own process with its own embedded engine, timed from the
            moment its writers hold their partitions until every row is in `clicks`

    python -m bench.sink_throughput [--rows 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stream_throughput import preload
from postbacks.local.broker import EmbeddedBroker
from postbacks.settings import Settings
from postbacks.topics import Topics, ensure_topics
from schemas import CLICK, Codec
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.tables import SPECS


def clicks(n: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {
            "click_id": uuid.uuid4().hex,
            "clicked_at": now - i,
            "offer_id": f"o{i % 50}",
            "publisher_id": f"p{i % 300}",
            "campaign_id": f"c{i % 40}",
            "sub1": f"s{i % 1000}",
            "ip": "198.51.100.7",
            "user_agent": "Mozilla/5.0 (Linux; Android 14) Mobile",
            "extra": {},
        }
        for i in range(n)
    ]


def baseline(path: Path, records: list[dict[str, Any]], batch_rows: int) -> float:
    """Rows/s of clickhouse-connect inserting the prepared rows, in the sink's batch size."""
    spec = next(s for s in SPECS if s.name == "clicks")
    client = connect(f"chdb://{path}")
    migrate(client, 180)
    codec = Codec(CLICK)
    rows = [spec.row(codec.decode(codec.encode(r), codec.headers), 0, i) for i, r in enumerate(records)]
    started = time.perf_counter()
    for i in range(0, len(rows), batch_rows):
        client.insert("clicks", rows[i : i + batch_rows], column_names=list(spec.insert_columns))
    elapsed = time.perf_counter() - started
    client.close()
    return len(rows) / elapsed


def main() -> None:
    from tests.helpers import SinkProcess  # the same process fixture the tests use

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    records = clicks(args.rows)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(Path(tmp) / "kafka") as broker:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            data_dir=Path(tmp),
            topic_partitions=6,
            log_level="WARNING",
        )
        asyncio.run(ensure_topics(settings))
        asyncio.run(preload(broker.bootstrap_servers, Topics().clicks_raw, CLICK, records))
        print(f"preloaded {len(records)} clicks", flush=True)
        base = baseline(Path(tmp) / "baseline-ch", records, settings.sink_batch_rows)
        print(f"baseline  clickhouse-connect insert from memory: {base:10.0f} rows/s", flush=True)

        os.environ.pop("CLICKHOUSE_DSN", None)
        sink = SinkProcess.for_settings(settings, Path(tmp) / "sink")
        started = time.perf_counter()
        sink.start()
        ready = time.perf_counter()
        before = sink.query("SELECT count() FROM clicks")[0][0]  # rows already in while it got ready
        try:
            while sink.query("SELECT count() FROM clicks")[0][0] < len(records):
                time.sleep(0.2)
            done = time.perf_counter()
        finally:
            sink.stop()
        rate = (len(records) - before) / (done - ready)
        print(
            f"sink      consume + decode + batch + insert:   {rate:10.0f} rows/s  "
            f"({len(records)} rows in {done - ready:.1f}s after {ready - started:.1f}s start-up)",
            flush=True,
        )
        print(f"ratio     sink / baseline = {rate / base:.2f}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "baseline_rows_per_s": base,
                    "sink_rows_per_s": rate,
                    "ratio": rate / base,
                    "rows": len(records),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
