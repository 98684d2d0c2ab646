"""What every service's Prometheus `/metrics` shares: the server, and consumer lag read from Kafka.

Lag is measured the way Kafka's own tools and exporters do, from the broker: for each partition
of the service's topics, the log end offset minus the group's committed offset (the log start
when nothing is committed yet). That is what a crash would have to read again plus what is not
read yet, it means the same for the Faust stream workers as for the plain aiokafka consumers of
the sink and the outbound worker, and it costs the services' own loops nothing: a thread of its
own asks the broker every few seconds and a scrape reads the last answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0


def serve(registry: CollectorRegistry, host: str, port: int) -> int:
    """Serve `registry` at http://host:port/metrics on a thread; the port taken when `port` is busy."""
    for candidate in dict.fromkeys((port, 0)):
        try:
            server, _thread = start_http_server(candidate, addr=host, registry=registry)
        except OSError:
            if candidate == 0:
                raise
            log.warning("metrics port taken; using a free one", extra={"port": port})
            continue
        bound: int = server.server_port
        log.info("metrics ready", extra={"url": f"http://{host}:{bound}/metrics"})
        return bound
    raise AssertionError("unreachable")


def lag_by_partition(
    ends: Mapping[Any, int], starts: Mapping[Any, int], committed: Mapping[Any, int]
) -> dict[Any, int]:
    """Records between each partition's committed offset (else its log start) and its log end."""
    return {tp: max(0, end - committed.get(tp, starts.get(tp, 0))) for tp, end in ends.items()}


class GroupLag(Collector):
    """`postbacks_consumer_lag_records{group,topic,partition}` for some consumer groups, from Kafka."""

    def __init__(self, bootstrap_servers: str, groups: Mapping[str, Sequence[str]]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.groups = {group: list(topics) for group, topics in groups.items()}
        self._latest: dict[tuple[str, str, int], int] = {}
        self._updated = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer-lag", daemon=True)

    def start(self) -> GroupLag:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "postbacks_consumer_lag_records",
            "Records between the group's committed offset and the log end, per partition (from Kafka)",
            labels=["group", "topic", "partition"],
        )
        for (group, topic, partition), value in sorted(self._latest.items()):
            lag.add_metric([group, topic, str(partition)], value)
        yield lag
        age = GaugeMetricFamily(
            "postbacks_consumer_lag_age_seconds", "Seconds since the lag was last read from Kafka"
        )
        age.add_metric([], time.time() - self._updated if self._updated else float("nan"))
        yield age

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="postbacks-metrics")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False, client_id="postbacks-metrics"
        )
        started = False
        try:
            while not self._stop.is_set():
                try:
                    if not started:
                        await admin.start()
                        await consumer.start()
                        started = True
                    self._latest = await self._read(admin, consumer)
                    self._updated = time.time()
                except Exception as exc:  # the broker away: keep the last answer, its age says how old
                    log.warning("consumer lag not read", extra={"error": repr(exc)[:300]})
                await asyncio.sleep(LAG_REFRESH_S)
        finally:
            if started:
                await consumer.stop()
                await admin.close()

    async def _read(self, admin: Any, consumer: Any) -> dict[tuple[str, str, int], int]:
        from aiokafka import TopicPartition

        names = sorted({t for topics in self.groups.values() for t in topics})
        partitions = {
            d["topic"]: [p["partition"] for p in d["partitions"]]
            for d in await admin.describe_topics(names)
            if d["error_code"] == 0
        }
        latest: dict[tuple[str, str, int], int] = {}
        for group, topics in self.groups.items():
            tps = [TopicPartition(t, p) for t in topics for p in sorted(partitions.get(t, ()))]
            if not tps:
                continue
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            for tp, value in lag_by_partition(ends, starts, committed).items():
                latest[(group, tp.topic, tp.partition)] = value
        return latest
