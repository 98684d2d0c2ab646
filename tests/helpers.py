"""Test helpers that drive real processes and read real topics (no mocks)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from commands.local.broker import free_port
from commands.local.children import spawn
from ingest.sources import write_starter_sources
from postbacks.groups import sink_client, sink_group
from postbacks.settings import Settings
from postbacks.topics import ensure_topics, topic_partitions
from schemas import STREAM_TICK, Codec, schema_name

REPO = Path(__file__).resolve().parent.parent


def spawn_cli(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`postbacks <command>` as a child process that dies with the test run, output to `log_path`."""
    return spawn([sys.executable, "-m", "commands.cli", command], log_path, env)


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: no commit, no flush, exactly like a crashed host."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    """SIGTERM (the service drains and commits), SIGKILL if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def create_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """One topic of a test's own, outside the pipeline's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def read_topic(
    settings: Settings, topic: str, schema: str, expect: int, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """Every record of `topic` from the beginning, decoded; waits until `expect` arrived (or timeout)."""
    return asyncio.run(_read(settings.kafka_bootstrap_servers, topic, schema, expect, timeout_s))


def _decoded(codec: Codec, messages: list[Any]) -> list[dict[str, Any]]:
    """Decoded records with their key and position; the stream's clock marks in clicks.raw are no records."""
    records = []
    for m in messages:
        if schema_name(m.headers) == STREAM_TICK:
            continue
        decoded = codec.decode(m.value, m.headers)
        decoded["_key"] = m.key
        decoded["_at"] = (m.partition, m.offset)
        records.append(decoded)
    return records


async def _read(
    bootstrap: str, topic: str, schema: str, expect: int, timeout_s: float
) -> list[dict[str, Any]]:
    codec = Codec(schema)
    # earliest: a seek_to_beginning racing the initial position lookup must not land at the end.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    records: list[dict[str, Any]] = []
    try:
        await consumer.start()
        partitions = await topic_partitions(consumer, topic)
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while len(records) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records += _decoded(codec, messages)
        # Linger briefly to catch records beyond the expected count (duplicates must show up).
        for messages in (await consumer.getmany(timeout_ms=300)).values():
            records += _decoded(codec, messages)
    finally:
        await consumer.stop()
    return records


@dataclass
class IngestProcess:
    """`postbacks ingest` as a real child process on a free port."""

    process: subprocess.Popen[bytes]
    base_url: str
    token: str
    log_path: Path
    env: dict[str, str]

    @classmethod
    @contextmanager
    def start(cls, settings: Settings, workdir: Path, **env_overrides: str) -> Iterator[IngestProcess]:
        sources = workdir / "sources.toml"
        token = write_starter_sources(sources)
        port = free_port()
        env = {
            **os.environ,
            **settings.with_overrides(sources_file=sources, ingest_port=port).to_env(),
            **env_overrides,
        }
        log_path = workdir / "ingest.log"
        process = spawn_cli("ingest", env, log_path)
        ingest = cls(process, f"http://127.0.0.1:{port}", token, log_path, env)
        try:
            ingest.wait_healthy()
            yield ingest
        finally:
            stop_process(ingest.process)

    def kill(self) -> None:
        kill_process(self.process)

    def restart(self) -> None:
        """The same service again: same port, sources and settings."""
        self.process = spawn_cli("ingest", self.env, self.log_path)
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ingest exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"ingest not healthy in {timeout_s}s:\n{self.log_path.read_text()}")


def produce(
    settings: Settings, topic: str, schema: str, records: list[dict[str, Any]], key_field: str
) -> list[int]:
    """Publish Avro records the way ingest does (keyed, schema headers); returns their offsets."""
    return asyncio.run(_produce(settings.kafka_bootstrap_servers, topic, schema, records, key_field))


async def _produce(
    bootstrap: str, topic: str, schema: str, records: list[dict[str, Any]], key_field: str
) -> list[int]:
    from aiokafka import AIOKafkaProducer

    codec = Codec(schema)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        offsets = []
        for record in records:
            meta = await producer.send_and_wait(
                topic, codec.encode(record), key=str(record[key_field]).encode(), headers=codec.headers
            )
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()


@dataclass
class StreamWorker:
    """`postbacks stream` as a real child process."""

    name: str
    settings: Settings
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_settings(
        cls, settings: Settings, workdir: Path, name: str = "worker-0", **env: str
    ) -> StreamWorker:
        full = {**os.environ, **settings.with_overrides(stream_worker_name=name).to_env(), **env}
        return cls(name, settings, full, workdir / f"stream-{name}.log")

    def start(self, wait_ready: bool = True, timeout_s: float = 60.0) -> StreamWorker:
        ready_before = (
            self.log_path.read_text(errors="replace").count("Worker ready") if self.log_path.exists() else 0
        )
        self.process = spawn_cli("stream", self.env, self.log_path)
        deadline = time.monotonic() + timeout_s
        while wait_ready and time.monotonic() < deadline:
            if self.log_path.read_text(errors="replace").count("Worker ready") > ready_before:
                return self
            assert self.process.poll() is None, self.log_tail()
            time.sleep(0.1)
        if wait_ready:
            raise AssertionError(f"worker {self.name} not ready in {timeout_s}s:\n{self.log_tail()}")
        return self

    def kill(self) -> None:
        """SIGKILL: no commit, no flush, exactly like a crashed host.

        A static group member: restarted under the same name, it takes its partitions back
        without a rebalance, before its session times out.
        """
        kill_process(self.process)

    def stop(self) -> None:
        stop_process(self.process)
        self.assert_no_failed_batch()

    def assert_no_failed_batch(self) -> None:
        """A batch that raised stops the worker (stream/app.py); Faust restarting an agent is as bad.

        Either can leave outcomes right by luck in a short test (the outputs went out before
        the failure), so the log is checked as well as the outcomes.
        """
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for sign in ("batch failed", "Restarting dead"):
            assert sign not in text, f"worker {self.name}: {sign!r} in its log:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def group_assignments(settings: Settings, group: str) -> dict[str, set[tuple[str, int]]]:
    """Each live member's assigned partitions, by client id, as the broker reports them."""
    return asyncio.run(_group_assignments(settings.kafka_bootstrap_servers, group))


async def _group_assignments(bootstrap: str, group: str) -> dict[str, set[tuple[str, int]]]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.group import MemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    result: dict[str, set[tuple[str, int]]] = {}
    for g in described.groups:
        for member in g[5]:
            client_id, raw_assignment = member[-4], member[-1]
            if not raw_assignment:  # joined, not yet assigned
                result.setdefault(client_id, set())
                continue
            assignment = MemberAssignment.decode(raw_assignment)
            result.setdefault(client_id, set()).update(
                (topic, p) for topic, partitions in assignment.assignment for p in partitions
            )
    return result


@dataclass
class SinkProcess:
    """`postbacks sink` as a real child process owning an embedded ClickHouse in `data_dir`."""

    env: dict[str, str]
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_settings(cls, settings: Settings, data_dir: Path, **env: str) -> SinkProcess:
        full = {
            **os.environ,
            **settings.with_overrides(data_dir=data_dir, clickhouse_dsn="").to_env(),
            "SINK_MAX_AGE_MS": "200",
            **env,
        }
        full.pop("CLICKHOUSE_DSN", None)  # the default: chdb under data_dir
        return cls(full, data_dir, data_dir / "sink.log")

    def start(self, timeout_s: float = 60.0) -> SinkProcess:
        from sinks.endpoint import endpoint_file

        self.data_dir.mkdir(parents=True, exist_ok=True)
        endpoint_file(self.data_dir).unlink(missing_ok=True)
        self.process = spawn_cli("sink", self.env, self.log_path)
        deadline = time.monotonic() + timeout_s
        while not (endpoint_file(self.data_dir).exists() and self._all_writers_assigned()):
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, f"sink not ready:\n{self.log_path.read_text()}"
            time.sleep(0.2)
        return self

    def _all_writers_assigned(self) -> bool:
        """Every table's consumer has joined its group and holds partitions (ready to crash mid-work)."""
        from sinks.tables import SPECS

        settings = Settings(kafka_bootstrap_servers=self.env["KAFKA_BOOTSTRAP_SERVERS"])
        prefix = self.env.get("TOPIC_PREFIX", "")
        for spec in SPECS:
            owners = group_assignments(settings, sink_group(prefix, spec.name))
            if not owners.get(sink_client(spec.name)):
                return False
        return True

    def query(self, sql: str) -> list[list[Any]]:
        from sinks.endpoint import remote_query

        result = remote_query(self.data_dir, sql)
        assert result is not None, "sink endpoint not answering"
        return result[1]

    def kill(self) -> None:
        """SIGKILL, as a crashed host; its consumers are static members, taken back on restart."""
        kill_process(self.process)

    def stop(self) -> None:
        stop_process(self.process)
