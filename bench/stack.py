"""The local stack the benchmarks drive: one Apache Kafka broker per run, fresh topics per stage.

Every stage gets its own topic prefix and data directory, so no stage reads another's
records or state, while the broker (the slow thing to start) is shared. Services are
the real `postbacks <service>` commands in child processes, as `postbacks up` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from commands.local.broker import LocalKafka
from commands.local.children import spawn
from postbacks.settings import Settings
from postbacks.topics import ensure_topics, topic_partitions

Record = tuple[bytes, bytes]  # (key, Avro value)


@dataclass
class Service:
    """A `postbacks <command>` child process and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, marker: str, timeout_s: float = 90.0, occurrences: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.log_text().count(marker) < occurrences:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {marker!r} in {timeout_s}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class BenchStack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = LocalKafka(workdir / "kafka")
        self._stages = count()
        self.services: list[Service] = []

    def __enter__(self) -> BenchStack:
        self.broker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.services):
            service.stop(10)
        self.broker.stop()

    def settings(self, stage: str, **overrides: object) -> Settings:
        """Fresh topics (own prefix) and a fresh data dir for one stage, topics created."""
        n = next(self._stages)
        data_dir = self.workdir / f"{n:02d}-{stage}"
        data_dir.mkdir(parents=True)
        settings = Settings(
            kafka_bootstrap_servers=self.broker.bootstrap_servers,
            topic_prefix=f"bench{n}.",
            data_dir=data_dir,
            log_format="text",
            log_level="INFO",
        ).with_overrides(**overrides)
        asyncio.run(ensure_topics(settings))
        return settings

    def start(self, command: str, settings: Settings, name: str | None = None, **env: str) -> Service:
        name = name or command
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.data_dir / f"{name}.log"
        full_env = {**os.environ, **settings.to_env(), **env}
        argv = [sys.executable, "-m", "commands.cli", command]
        service = Service(name, spawn(argv, log_path, full_env), log_path)
        self.services.append(service)
        return service

    def start_argv(self, name: str, argv: Sequence[str], settings: Settings) -> Service:
        log_path = settings.data_dir / f"{name}.log"
        service = Service(name, spawn(list(argv), log_path, {**os.environ, **settings.to_env()}), log_path)
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        self.services.remove(service)


def granian(target: str, port: int, factory: bool = False) -> list[str]:
    """The server ingest runs on (ingest/server.py), for a handler given by import path."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--no-ws",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--factory"] if factory else []),
        target,
    ]


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 in {timeout_s}s")
        time.sleep(0.1)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as ingest's producer applies it to the click id."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


async def preload(
    bootstrap: str,
    topic: str,
    partitions: int,
    records: Sequence[Record],
    headers: Sequence[tuple[str, bytes]],
) -> None:
    """Append already-encoded records fast: whole batches per partition, not one send per record.

    Keys go where ingest's producer would put them, so the stream finds a postback in
    its click's partition.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        by_partition: dict[int, list[Record]] = {}
        for key, value in records:
            by_partition.setdefault(partition_of(key, partitions), []).append((key, value))
        sends = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                    batch.close()
                    sends.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=list(headers))
            batch.close()
            sends.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


class OffsetWatch:
    """Samples a cumulative count of records in some topics (the outputs a stage produces)."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> OffsetWatch:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await self._consumer.start()
        self._tps = await topic_partitions(self._consumer, *self.topics)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def count(self) -> int:
        assert self._consumer is not None
        return sum((await self._consumer.end_offsets(self._tps)).values())


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offsets on a topic, summed: how far it has read it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(int(meta.offset) for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) a live process has used so far, from /proc (Linux).

    With `children`, its live descendants' too (granian serves from worker processes).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if not children:
        return own
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return own + sum(cpu_seconds(kid, children=True) for kid in kids)
