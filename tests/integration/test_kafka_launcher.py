"""The launcher's promises on a real Apache Kafka: data kept across a restart on the same ports,
a node that cannot start is reported with its log and leaves no JVM, and no JVM outlives its parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from commands.local.broker import BrokerError, LocalKafka, metadata_brokers
from postbacks.topics import topic_partitions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=value)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        while len(values) < sum(ends.values()):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                values += [m.value for m in messages]
        return sorted(values)
    finally:
        await consumer.stop()


def test_a_restarted_broker_comes_back_on_its_ports_with_its_data(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka").start()
    try:
        bootstrap = kafka.bootstrap_servers
        assert kafka.version.startswith("4.")
        values = [f"v{i}".encode() for i in range(50)]
        asyncio.run(_produce(bootstrap, "kept", values))
        kafka.stop()
        assert metadata_brokers(kafka.host, kafka.nodes[0].port) == 0  # really down
        kafka.start()
        assert kafka.bootstrap_servers == bootstrap
        assert asyncio.run(_read_all(bootstrap, "kept")) == sorted(values)
    finally:
        kafka.stop()
    assert not kafka.running


def test_a_node_that_does_not_become_ready_is_reported_with_its_log_and_stopped(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka")
    with pytest.raises(BrokerError) as failure:
        kafka.start(timeout_s=0.5)  # a JVM cannot get there this fast
    assert "not ready after" in str(failure.value) and "broker.log" in str(failure.value)
    assert kafka.nodes and all(n.process is not None and n.process.poll() is not None for n in kafka.nodes)


def test_ports_held_by_another_program_are_named(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka").start()
    kafka.stop()
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", kafka.nodes[0].port))
        squatter.listen()
        with pytest.raises(BrokerError, match=r"ports of the cluster .* are taken"):
            LocalKafka(tmp_path / "kafka").start()


def test_no_broker_outlives_a_killed_parent(tmp_path: Path) -> None:
    """The parent (a supervisor, a test run) is SIGKILLed: its JVM gets SIGTERM and exits."""
    pid_file = tmp_path / "jvm.pid"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from commands.local.broker import LocalKafka
        kafka = LocalKafka(Path({str(tmp_path / "kafka")!r})).start()
        Path({str(pid_file)!r}).write_text(str(kafka.nodes[0].process.pid))
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 90
        while not pid_file.exists():
            assert parent.poll() is None, "the launcher exited early"
            assert time.monotonic() < deadline, "broker never started"
            time.sleep(0.2)
        jvm = int(pid_file.read_text())
        os.kill(jvm, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60
        while _alive(jvm):
            assert time.monotonic() < deadline, f"JVM {jvm} outlived its parent"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
