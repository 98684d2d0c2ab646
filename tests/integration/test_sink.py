"""The whole pipeline into ClickHouse: totals equal the distinct stream outputs, through sink crashes."""

from __future__ import annotations

import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_REJECTED
from tests.helpers import SinkProcess, StreamWorker, read_topic
from tests.integration.stream_scenario import build, collect
from tests.integration.test_stream import STREAM_ENV, send, send_late_clicks

pytestmark = pytest.mark.integration


def expected_totals(settings: Settings, clicks: int) -> dict[str, Any]:
    """What ClickHouse must say, from the stream's outputs on Kafka, deduplicated by identity."""
    topics = Topics(settings.topic_prefix)
    latest: dict[str, dict[str, Any]] = {}
    for c in read_topic(settings, topics.conversions_attributed, CONVERSION, expect=10_000, timeout_s=2):
        if c["conversion_id"] not in latest or latest[c["conversion_id"]]["version"] < c["version"]:
            latest[c["conversion_id"]] = c
    rejected = {
        r["request_id"]: r["reason"]
        for r in read_topic(
            settings, topics.postbacks_rejected, POSTBACK_REJECTED, expect=10_000, timeout_s=2
        )
    }
    duplicates = {
        d["request_id"]: d["reason"]
        for d in read_topic(
            settings, topics.postbacks_duplicates, POSTBACK_DUPLICATE, expect=10_000, timeout_s=2
        )
    }
    approved = [c for c in latest.values() if c["status"] == "approved"]
    return {
        "clicks": clicks,
        "by_status": dict(Counter(c["status"] for c in latest.values())),
        "revenue_usd": sum((c["revenue_usd"] for c in approved), Decimal(0)),
        "payout_usd": sum((c["payout_usd"] for c in approved), Decimal(0)),
        "rejected": dict(Counter(rejected.values())),
        "duplicates": dict(Counter(duplicates.values())),
    }


def clickhouse_totals(sink: SinkProcess) -> dict[str, Any]:
    [[clicks]] = sink.query("SELECT toInt64(sum(clicks)) FROM clicks_hourly")
    by_status = {
        s: n
        for s, n in sink.query(
            "SELECT status, toInt64(sum(conversions)) AS n FROM conversions_hourly "
            "GROUP BY status HAVING n != 0"
        )
    }
    [[revenue, payout]] = sink.query(
        "SELECT sumIf(revenue_usd, status = 'approved'), sumIf(payout_usd, status = 'approved') "
        "FROM conversions_hourly"
    )
    rejected = {
        r: n
        for r, n in sink.query(
            "SELECT reason, toInt64(sum(rejected)) FROM rejections_hourly "
            "WHERE stage = 'stream' GROUP BY reason"
        )
    }
    duplicates = {
        r: n
        for r, n in sink.query(
            "SELECT reason, toInt64(sum(duplicates)) FROM duplicates_hourly GROUP BY reason"
        )
    }
    return {
        "clicks": clicks,
        "by_status": by_status,
        "revenue_usd": Decimal(revenue),
        "payout_usd": Decimal(payout),
        "rejected": rejected,
        "duplicates": duplicates,
    }


def wait_for(sink: SinkProcess, expected: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = clickhouse_totals(sink)
        if got == expected:
            break
        time.sleep(0.5)
    return got


def run_rounds(
    settings: Settings, rounds: int, between: Any = None
) -> tuple[int, list[tuple[str, str, str]]]:
    clicks, expected = 0, []
    for i in range(rounds):
        scenario = build(f"s{i}")
        send(settings, scenario)
        send_late_clicks(settings, scenario)
        clicks += len(scenario.clicks) + len(scenario.late_clicks)
        expected += scenario.expected
        if between is not None:
            between(i)
    return clicks, expected


def test_clickhouse_totals_equal_the_distinct_stream_outputs(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    worker = StreamWorker.for_settings(pipeline_settings, tmp_path, **STREAM_ENV).start()
    sink = SinkProcess.for_settings(pipeline_settings, tmp_path / "sink").start()
    try:
        clicks, expected = run_rounds(pipeline_settings, 2)
        assert collect(pipeline_settings, expect=len(expected)) == sorted(expected)
        want = expected_totals(pipeline_settings, clicks)
        assert (
            want["by_status"] == {"approved": 10} and want["rejected"]["unknown_click"] == 2
        )  # the scenario's
        assert wait_for(sink, want) == want, sink.log_path.read_text()[-3000:]
        # The latest-version table agrees with the aggregates.
        [[latest]] = sink.query("SELECT count() FROM conversions FINAL WHERE status = 'approved'")
        assert latest == 10
    finally:
        sink.stop()
        worker.stop()


def test_sigkill_of_the_sink_leaves_totals_exact(pipeline_settings: Settings, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    worker = StreamWorker.for_settings(pipeline_settings, tmp_path, **STREAM_ENV).start()
    sink = SinkProcess.for_settings(pipeline_settings, tmp_path / "sink").start()

    def crash(_: int) -> None:
        time.sleep(rng.uniform(0.0, 1.0))  # mid-batch, mid-insert or between: wherever it lands
        sink.kill()
        sink.start()

    try:
        clicks, expected = run_rounds(pipeline_settings, 3, between=crash)
        assert collect(pipeline_settings, expect=len(expected)) == sorted(expected)
        want = expected_totals(pipeline_settings, clicks)
        got = wait_for(sink, want)
        clicks = sink.query(
            "SELECT kafka_partition, groupArray(kafka_offset) FROM "
            "(SELECT * FROM clicks ORDER BY kafka_offset) GROUP BY kafka_partition ORDER BY 1"
        )
        ends = {p: len(sink.query(f"SELECT 1 FROM clicks WHERE kafka_partition = {p}")) for p in range(3)}
        assert got == want, (
            f"seed={seed}\nclick offsets stored: {clicks} {ends}\n{sink.log_path.read_text()[-3000:]}"
        )
    finally:
        sink.stop()
        worker.stop()
