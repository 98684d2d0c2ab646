"""The stream on the real broker: exact outcomes, through worker crashes and with two workers."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path

import pytest

from postbacks.groups import stream_client, stream_group
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK, CONVERSION, FX_RATE, POSTBACK_RAW
from tests.helpers import StreamWorker, group_assignments, produce, read_topic
from tests.integration.stream_scenario import HOUR, Scenario, build, collect

pytestmark = pytest.mark.integration

STREAM_ENV = {
    "UNKNOWN_CLICK_GRACE_S": "4",
    "STREAM_TICK_INTERVAL_S": "0.5",
    "STREAM_COMMIT_INTERVAL_S": "0.5",
    "STREAM_SESSION_TIMEOUT_S": "6",
    "LOG_LEVEL": "INFO",
}


def send(settings: Settings, scenario: Scenario, *, postbacks: slice = slice(None)) -> None:
    topics = Topics(settings.topic_prefix)
    produce(settings, topics.clicks_raw, CLICK, scenario.clicks, "click_id")
    produce(settings, topics.postbacks_raw, POSTBACK_RAW, scenario.postbacks[postbacks], "click_id")


def send_late_clicks(settings: Settings, scenario: Scenario) -> None:
    """The clicks whose postbacks were sent first (they must wait for them)."""
    produce(settings, Topics(settings.topic_prefix).clicks_raw, CLICK, scenario.late_clicks, "click_id")


def test_every_postback_gets_exactly_its_outcome(pipeline_settings: Settings, tmp_path: Path) -> None:
    worker = StreamWorker.for_settings(pipeline_settings, tmp_path, **STREAM_ENV).start()
    try:
        scenario = build()  # built now: postbacks are "received" just before they are sent
        send(pipeline_settings, scenario)
        time.sleep(1.0)  # the late click really is late: its postback is held first
        send_late_clicks(pipeline_settings, scenario)
        got = collect(pipeline_settings, expect=len(scenario.expected))
    finally:
        worker.stop()
    assert got == sorted(scenario.expected), worker.log_tail()


def test_sigkill_mid_stream_changes_nothing(pipeline_settings: Settings, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"sigkill schedule seed={seed}")
    expected: list[tuple[str, str, str]] = []
    worker = StreamWorker.for_settings(pipeline_settings, tmp_path, **STREAM_ENV).start()
    try:
        for i in range(4):
            scenario = build(f"k{i}")
            expected += scenario.expected
            send(pipeline_settings, scenario)
            send_late_clicks(pipeline_settings, scenario)
            time.sleep(rng.uniform(0.05, 1.5))  # somewhere in the middle of processing it
            worker.kill()  # no commit, no flush: the restart re-reads from the last commit
            worker.start()
        try:
            got = collect(pipeline_settings, expect=len(expected), timeout_s=90)
        except AssertionError as exc:
            raise AssertionError(f"seed={seed}: {exc}\n{worker.log_tail()}") from None
    finally:
        worker.stop()
    assert got == sorted(expected), f"seed={seed}\n{worker.log_tail()}"


def test_two_workers_in_one_group_split_the_work_exactly(pipeline_settings: Settings, tmp_path: Path) -> None:
    workers = [
        StreamWorker.for_settings(pipeline_settings, tmp_path, name=f"worker-{i}", **STREAM_ENV).start()
        for i in range(2)
    ]
    scenarios = [build(f"w{i}") for i in range(4)]
    expected = sorted(e for s in scenarios for e in s.expected)
    try:
        for scenario in scenarios:
            send(pipeline_settings, scenario)
            send_late_clicks(pipeline_settings, scenario)
        got = collect(pipeline_settings, expect=len(expected), timeout_s=120)
        assignments = group_assignments(pipeline_settings, stream_group(pipeline_settings.topic_prefix))
    finally:
        for worker in workers:
            worker.stop()
    assert got == expected, "\n".join(w.log_tail() for w in workers)
    # Both really worked: each owned some of the postbacks partitions (with their clicks).
    raw = Topics(pipeline_settings.topic_prefix).postbacks_raw
    owned = {client: {p for t, p in tps if t == raw} for client, tps in assignments.items()}
    assert set(owned) == {stream_client("worker-0"), stream_client("worker-1")}, assignments
    assert all(owned.values()) and set.union(*owned.values()) == {0, 1, 2}, owned


def test_live_fx_rates_and_a_registered_plugin_in_the_real_worker(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    topics = Topics(pipeline_settings.topic_prefix)
    produce(
        pipeline_settings,
        topics.fx_rates,
        FX_RATE,
        [{"currency": "XAG", "usd_per_unit": "30.5", "as_of": int(time.time() * 1000)}],
        "currency",
    )
    worker = StreamWorker.for_settings(
        pipeline_settings, tmp_path, STREAM_PLUGINS="tests.integration.sample_plugin", **STREAM_ENV
    ).start()
    try:
        time.sleep(1.0)  # the rate feed reads fx.rates from the start, beside the agent
        scenario = Scenario()
        scenario.click("fx-1", 2 * HOUR)
        scenario.clicks[0]["publisher_id"] = "vip-7"
        scenario.postback("fx-1", "conversion", "approved", after_ms=HOUR, revenue=Decimal(2), currency="XAG")
        send(pipeline_settings, scenario)
        [conversion] = read_topic(pipeline_settings, topics.conversions_attributed, CONVERSION, expect=1)
    finally:
        worker.stop()
    assert conversion["revenue_usd"] == Decimal("61.000000") and conversion["fx_rate"] == Decimal("30.5")
    assert conversion["enrichment"] == {"publisher_tier": "gold"}
