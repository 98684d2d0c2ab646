"""Start and stop the embedded Kafka-protocol broker (noida-db) for the local stack and tests.

This is the only module that knows which broker the local stack runs; everything
else talks Kafka protocol to `KAFKA_BOOTSTRAP_SERVERS`. noida-db keeps its log in
memory and saves it to its data dir on a clean stop, so `stop()` always asks it to
stop (SIGTERM) and waits before resorting to SIGKILL. See README "Local stack".
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from importlib.resources import files
from pathlib import Path

from postbacks.groups import (
    outbound_client,
    outbound_group,
    sink_client,
    sink_group,
    stream_client,
    stream_group,
)
from postbacks.local.children import spawn
from postbacks.local.silence import CannotSilence, silence

READY_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (never assume 9092 is: other programs may hold it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def binary_path() -> Path:
    path = Path(str(files("noida_db").joinpath("noida-db")))
    if not path.is_file():
        raise BrokerError(f"noida-db binary not found at {path}; is the noida-db wheel installed?")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def metadata_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when the broker answers a Kafka Metadata (v0) request with at least one broker.

    Raw protocol, no client library, so readiness can be checked from sync code and
    does not depend on any client's reconnect logic.
    """
    correlation_id = 7
    client_id = b"postbacks-launcher"
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", header)
            response = _recv_exact(sock, size)
    except OSError:
        return False
    if len(response) < 8:
        return False
    got_id, brokers = struct.unpack(">ii", response[:8])
    return bool(got_id == correlation_id and brokers >= 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return bytes(data)


async def evict_group_members(bootstrap: str, group: str, client_id: str) -> list[str]:
    """Remove a crashed consumer from its group, as its session timeout would on Apache Kafka.

    noida-db does not expire the session of a consumer killed without LeaveGroup: the
    dead member stays, is even elected leader, and a restarted worker waits forever
    for its assignment. The local supervisor and the test fixtures therefore send the
    LeaveGroup the dead process could not, for the members with its client id
    (README "Local stack"). On Apache Kafka this only makes the rebalance sooner.
    Returns the member ids removed.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.protocol.group import LeaveGroupRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
        members = [m for g in described.groups for m in g[5]]  # (member_id, [instance_id,] client_id, ...)
    finally:
        await admin.close()
    dead = [m[0] for m in members if client_id in m[1:4]]
    if not dead:
        return []
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)
        for member_id in dead:
            await client.send(node, LeaveGroupRequest(group, member_id))
    finally:
        await client.close()
    return dead


def evict_crashed_stream_worker(bootstrap: str, prefix: str, worker_name: str) -> None:
    """Before restarting a stream worker that died without leaving its group."""
    asyncio.run(evict_group_members(bootstrap, stream_group(prefix), stream_client(worker_name)))


def evict_crashed_sink(bootstrap: str, prefix: str) -> None:
    """Before restarting a sink that died without leaving its groups (one per table)."""
    from sinks.tables import SPECS

    for spec in SPECS:
        asyncio.run(evict_group_members(bootstrap, sink_group(prefix, spec.name), sink_client(spec.name)))


def evict_crashed_outbound(bootstrap: str, prefix: str, worker_name: str) -> None:
    """Before restarting an outbound worker that died without leaving its group."""
    asyncio.run(evict_group_members(bootstrap, outbound_group(prefix), outbound_client(worker_name)))


class EmbeddedBroker:
    """One noida-db process serving Kafka on a loopback port, data kept in `data_dir`."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise BrokerError("broker not started")
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> EmbeddedBroker:
        """Start on the chosen (or a free) port and return once it answers Metadata."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port is not None else 3
        for attempt in range(attempts):
            port = self.port if self.port is not None else free_port(self.host)
            if self._spawn(port, timeout_s):
                self.port = port
                return self
            self._terminate()
            if attempt + 1 < attempts:
                continue
        raise BrokerError(f"noida-db did not become ready; see {self.log_path}:\n{self._log_tail()}")

    def _spawn(self, port: int, timeout_s: float) -> bool:
        command = [
            str(binary_path()),
            "start",
            "--only",
            "kafka",
            "--host",
            self.host,
            "--kafka-port",
            str(port),
            "--data-dir",
            str(self.data_dir),
        ]
        # Own session: a Ctrl-C at the terminal reaches the supervisor, which stops us in order.
        self._process = spawn(command, self.log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited: port taken between our check and its bind, or a real failure
            if metadata_answers(self.host, port):
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 15.0) -> None:
        """Clean stop: it answers nobody once its save begins, saves its data and exits.

        noida-db snapshots its log on SIGTERM while still answering requests, so it is first
        cut off its clients (postbacks.local.silence); SIGKILL only if it does not exit in time.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            silence(process.pid)
        except CannotSilence as exc:
            log.warning("stopping the broker without cutting its clients off", extra={"error": str(exc)})
        process.send_signal(signal.SIGTERM)  # if frozen, pending: its save starts on SIGCONT
        process.send_signal(signal.SIGCONT)
        self._wait_or_kill(process, timeout_s)

    def kill(self) -> None:
        """SIGKILL, for fault tests: whatever was not yet saved is lost, as with a crashed host."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _terminate(self, timeout_s: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        self._wait_or_kill(process, timeout_s)

    @staticmethod
    def _wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> None:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
