"""The broker stopped and restarted under traffic, twice: nothing acknowledged is lost, nothing doubled.

Unlike the other fault tests this one owns its broker (one Apache Kafka node, stopped by its
controlled shutdown and started again on the same ports with its data). While it is down the ingest answers
503 + Retry-After and the senders retry; the stream worker and the sink ride through the outage,
or exit and are started again by the test as a supervisor would (what happened is printed).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path

import pytest

from commands.local.broker import LocalKafka
from postbacks.settings import Settings
from tests.faults.driver import Traffic, pipeline, wait_until_exact
from tests.helpers import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(300)]

OUTAGES = 2


def test_broker_restarted_under_traffic_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print(f"FAULT_SEED={seed}")
    broker = LocalKafka(tmp_path / "kafka").start()
    try:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"b{uuid.uuid4().hex[:8]}.",
            topic_partitions=3,
            data_dir=tmp_path,
            log_format="text",
            publish_timeout_s=1.0,  # a request waits this long for the broker, then gets its 503
        )
        create_topics(settings)
        outages: list[tuple[float, float]] = []
        revived: list[str] = []
        with pipeline(settings, tmp_path) as running:
            traffic = Traffic(running.ingest.base_url, running.ingest.token, clicks=400, rate=50, seed=seed)
            traffic.start()
            for _ in range(OUTAGES):
                time.sleep(rng.uniform(1.0, 3.0))
                at = round(time.monotonic() - traffic.started, 1)
                broker.stop()
                down = rng.uniform(2.0, 5.0)
                time.sleep(down)
                broker.start()
                outages.append((at, round(down, 1)))
                revived += running.revive()
            traffic.wait(180)
            revived += running.revive()
            result = wait_until_exact(running, traffic)
        unavailable = traffic.progress.statuses[503] + traffic.progress.statuses["no answer"]
        print(f"outages (at s, down s): {outages}; restarted after exiting: {revived or 'none'}")
        print(f"answered 503 or not at all, retried: {unavailable}\nfigures: {result.figures}")
        assert not result.problems, "\n".join([f"FAULT_SEED={seed}", *result.problems])
        assert traffic.progress.statuses[503] > 0  # the senders met the outage
    finally:
        broker.stop()
