"""A 3-node Apache Kafka cluster loses the leader of the busiest partitions under traffic, then another node.

Topics have replication factor 3 and `min.insync.replicas=2`; every producer of the pipeline
uses `acks=all`, so an acknowledged record is on at least two nodes when the ack is sent, and a
single node's SIGKILL (no controlled shutdown, no flush) cannot take it away. The pipeline
(ingest, one stream worker, the sink) runs through both failovers without being restarted
unless it exits on its own; the check is the fault driver's record-by-record one.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from commands.local.broker import LocalKafka
from postbacks.settings import Settings
from postbacks.topics import Topics
from tests.faults.driver import Traffic, pipeline, wait_until_exact
from tests.helpers import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(420)]


def busiest_leader(settings: Settings) -> int:
    """The node id leading the most partitions of the two source topics (ties: lowest id)."""
    topics = Topics(settings.topic_prefix)
    return asyncio.run(_leaders(settings.kafka_bootstrap_servers, [topics.clicks_raw, topics.postbacks_raw]))


async def _leaders(bootstrap: str, names: list[str]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for topic in described for p in topic["partitions"] if p["leader"] >= 0)
    return min(leaders, key=lambda node: (-leaders[node], node))


def test_leader_killed_then_another_node_killed_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print(f"FAULT_SEED={seed}")
    cluster = LocalKafka(tmp_path / "kafka", nodes=3).start()
    try:
        settings = Settings(
            kafka_bootstrap_servers=cluster.bootstrap_servers,
            topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
            topic_partitions=3,
            topic_replication_factor=3,
            data_dir=tmp_path,
            log_format="text",
        )
        create_topics(settings)
        events: list[str] = []
        revived: list[str] = []
        with pipeline(settings, tmp_path) as running:
            traffic = Traffic(running.ingest.base_url, running.ingest.token, clicks=400, rate=50, seed=seed)
            traffic.start()
            time.sleep(rng.uniform(1.5, 3.0))
            leader = busiest_leader(settings)
            at = round(time.monotonic() - traffic.started, 1)
            cluster.kill_node(leader - 1)
            events.append(f"{at}s: SIGKILL node {leader} (leader of the most source partitions)")
            time.sleep(rng.uniform(2.0, 4.0))
            cluster.start_node(leader - 1)
            events.append(f"{round(time.monotonic() - traffic.started, 1)}s: node {leader} back")
            revived += running.revive()
            time.sleep(rng.uniform(1.0, 3.0))
            other = rng.choice([n.node_id for n in cluster.nodes if n.node_id != leader])
            cluster.kill_node(other - 1)
            events.append(f"{round(time.monotonic() - traffic.started, 1)}s: SIGKILL node {other}")
            time.sleep(rng.uniform(2.0, 4.0))
            cluster.start_node(other - 1)
            events.append(f"{round(time.monotonic() - traffic.started, 1)}s: node {other} back")
            traffic.wait(240)
            revived += running.revive()
            result = wait_until_exact(running, traffic)
        print("\n".join(events))
        print(f"restarted after exiting: {revived or 'none'}\nfigures: {result.figures}")
        assert not result.problems, "\n".join([f"FAULT_SEED={seed}", *events, *result.problems])
        assert result.figures["clicks_accepted"] > 0 and result.figures["postbacks_accepted"] > 0
    finally:
        cluster.stop()
