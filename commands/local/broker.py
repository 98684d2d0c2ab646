"""Start and stop Apache Kafka (KRaft) for the local stack, the tests and the benchmarks.

This is the only module that knows which broker the local stack runs; everything else
talks Kafka protocol to `KAFKA_BOOTSTRAP_SERVERS`, exactly as against a production cluster.
Each node is one `kafka.Kafka` JVM in combined broker+controller mode on free loopback
ports, from the jars `postbacks kafka install` put in the cache (commands.local.kafka_install).
One node for `postbacks up`, the tests and the benchmarks; three (`LocalKafka(nodes=3)`,
`postbacks up --brokers 3`) for replication and leader failover: topics then default to
replication factor 3 with `min.insync.replicas=2`.

The cluster's layout (cluster id, node ids, ports) is written to `cluster.json` in its data
dir on first start, so a restart — of the stack, or of one node in a fault test — comes back
on the same ports with its data, and clients holding the bootstrap address reconnect.

Stopping is Kafka's own: SIGTERM starts a controlled shutdown (leadership moved away, logs
flushed and closed, a clean-shutdown marker written); SIGKILL only if it overruns its bound.
Every JVM dies with its parent (commands.local.children), so no broker outlives a killed
supervisor or test run.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from commands.local.children import spawn
from commands.local.kafka_install import (
    KafkaInstall,
    KafkaInstallError,
    install,
    java_binary,
    log4j_config_path,
)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
#: Heap of each broker JVM. 512 MiB carries the whole test suite and the benchmarks (README
#: "Local stack": what was measured); Kafka keeps its data in the page cache, not the heap.
DEFAULT_HEAP = os.environ.get("KAFKA_HEAP", "512m")

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (never assume 9092 is: other programs may hold it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def metadata_brokers(host: str, port: int, timeout_s: float = 1.0) -> int:
    """How many live brokers a Metadata (v4) request to host:port lists; 0 if it does not answer.

    Raw protocol, no client library, so readiness is checked from sync code by a real Kafka
    request and does not depend on any client's reconnect logic. v4 is served by every Kafka
    from 1.0 to 4.x (Kafka 4 removed v0-v3).
    """
    correlation_id = 7
    client_id = b"postbacks-launcher"
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", -1, 0)  # all topics (null array), no auto-creation
    request = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            response = _recv_exact(sock, size)
    except OSError:
        return 0
    if len(response) < 12:
        return 0
    got_id, _throttle, brokers = struct.unpack(">iii", response[:12])
    return brokers if got_id == correlation_id else 0


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return bytes(data)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what `random-uuid` prints).

    Like Kafka's own `Uuid.randomUuid`, never one that starts with "-": the storage tool would
    read it as an option (1 start in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class KafkaNode:
    """One combined broker+controller JVM."""

    node_id: int
    host: str
    port: int
    controller_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def node_properties(node: KafkaNode, voters: str, nodes: int) -> str:
    """server.properties of one node; replication defaults follow the cluster's size."""
    replicas = min(nodes, 3)
    min_isr = 2 if nodes >= 3 else 1
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.data_dir / "data",
        # Topics are created by the pipeline with explicit counts (postbacks.topics); a typo'd
        # topic name must fail, not appear.
        "auto.create.topics.enable": "false",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Internal topics sized for one machine: 50 partitions each (the default) cost seconds on
        # the first group join and the first transaction of every test session.
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.num.partitions": 10,
        # A group formed by workers starting together rebalances once, at once.
        "group.initial.rebalance.delay.ms": 0,
        "unclean.leader.election.enable": "false",
        "num.network.threads": 2,
        "num.io.threads": 4,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class LocalKafka:
    """An Apache Kafka cluster of `nodes` combined nodes on loopback, data kept in `data_dir`."""

    def __init__(
        self, data_dir: Path, nodes: int = 1, host: str = "127.0.0.1", heap: str = DEFAULT_HEAP
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = data_dir
        self.host = host
        self.heap = heap
        self.size = nodes
        self.nodes: list[KafkaNode] = []
        self.cluster_id = ""
        self.kafka: KafkaInstall | None = None
        self.start_seconds = 0.0

    @property
    def bootstrap_servers(self) -> str:
        if not self.nodes:
            raise BrokerError("broker not started")
        return ",".join(node.address for node in self.nodes)

    @property
    def version(self) -> str:
        return self.kafka.version if self.kafka else "?"

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(node.running for node in self.nodes)

    @property
    def log_path(self) -> Path:
        return self.nodes[0].log_path if self.nodes else self.data_dir / "node-1" / "broker.log"

    @property
    def replication_factor(self) -> int:
        return min(self.size, 3)

    def describe(self) -> str:
        return (
            f"Apache Kafka {self.version} (KRaft, {self.size} node{'s' if self.size > 1 else ''}, "
            f"heap {self.heap} each) on {self.bootstrap_servers}"
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> LocalKafka:
        """Install if needed, format on first start, start every node, return once all serve."""
        started = time.monotonic()
        try:
            self.kafka = install(say=lambda line: log.info(line))
            java_binary()
        except KafkaInstallError as exc:
            raise BrokerError(str(exc)) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._layout()
        for node in self.nodes:
            self._spawn(node)
        self._wait_ready(self.nodes, timeout_s)
        self.start_seconds = time.monotonic() - started
        log.info(
            "kafka started",
            extra={
                "kafka_version": self.version,
                "nodes": self.size,
                "bootstrap_servers": self.bootstrap_servers,
                "heap": self.heap,
                "seconds": round(self.start_seconds, 2),
            },
        )
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Controlled shutdown of every node (SIGTERM, all at once), SIGKILL past the bound."""
        live = [node for node in self.nodes if node.running]
        for node in live:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in live:
            _wait_or_kill(node, max(0.1, deadline - time.monotonic()))

    def stop_node(self, index: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
        node = self.nodes[index]
        if node.running:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
            _wait_or_kill(node, timeout_s)

    def kill_node(self, index: int) -> None:
        """SIGKILL one node, as a crashed host: no controlled shutdown, no flush."""
        node = self.nodes[index]
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def kill(self) -> None:
        for index in range(len(self.nodes)):
            self.kill_node(index)

    def start_node(self, index: int, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Restart a stopped or killed node on its ports with its data; returns once it serves again."""
        node = self.nodes[index]
        if node.running:
            return
        self._spawn(node)
        self._wait_ready([node], timeout_s)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------------------

    def _layout(self) -> None:
        """Read the cluster's layout from cluster.json, or pick ports, write it and format storage."""
        layout_path = self.data_dir / "cluster.json"
        if layout_path.is_file():
            layout = json.loads(layout_path.read_text())
            if len(layout["nodes"]) != self.size:
                raise BrokerError(
                    f"{self.data_dir} holds a {len(layout['nodes'])}-node cluster, asked for {self.size}: "
                    "use another data dir"
                )
            self.cluster_id = layout["cluster_id"]
            self.nodes = [self._node(n["id"], n["port"], n["controller_port"]) for n in layout["nodes"]]
            busy = [
                f"{self.host}:{p}"
                for node in self.nodes
                for p in (node.port, node.controller_port)
                if not port_is_free(self.host, p)
            ]
            if busy:
                raise BrokerError(f"the ports of the cluster in {self.data_dir} are taken: {', '.join(busy)}")
        else:
            self.cluster_id = new_cluster_id()
            self.nodes = [
                self._node(i, free_port(self.host), free_port(self.host)) for i in range(1, self.size + 1)
            ]
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            node.properties_path.write_text(node_properties(node, voters, self.size))
            if not (node.data_dir / "data" / "meta.properties").is_file():
                self._format(node)
        layout_path.write_text(
            json.dumps(
                {
                    "cluster_id": self.cluster_id,
                    "nodes": [
                        {"id": n.node_id, "port": n.port, "controller_port": n.controller_port}
                        for n in self.nodes
                    ],
                },
                indent=2,
            )
        )

    def _node(self, node_id: int, port: int, controller_port: int) -> KafkaNode:
        return KafkaNode(node_id, self.host, port, controller_port, self.data_dir / f"node-{node_id}")

    def _java(self, main: str, *args: str, heap: str, gc_log: Path | None = None) -> list[str]:
        assert self.kafka is not None
        return [
            java_binary(),
            f"-Xms{heap}" if main == "kafka.Kafka" else "-Xms32m",
            f"-Xmx{heap}",
            # Heap after each collection, so the heap bound can be checked against real use.
            *([f"-Xlog:gc:file={gc_log}::filecount=2,filesize=5m"] if gc_log else []),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j_config_path()}",
            "-cp",
            self.kafka.classpath,
            main,
            *args,
        ]

    def _format(self, node: KafkaNode) -> None:
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "--cluster-id",
            self.cluster_id,
            "--config",
            str(node.properties_path),
            heap="256m",
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            raise BrokerError(f"formatting {node.data_dir} failed ({done.returncode}):\n{output}")

    def _spawn(self, node: KafkaNode) -> None:
        command = self._java(
            "kafka.Kafka", str(node.properties_path), heap=self.heap, gc_log=node.data_dir / "gc.log"
        )
        node.process = spawn(command, node.log_path)

    def _wait_ready(self, nodes: list[KafkaNode], timeout_s: float) -> None:
        """Each node answers Metadata listing every broker of the cluster that is meant to run."""
        expected = sum(1 for n in self.nodes if n.process is not None and n.process.poll() is None)
        deadline = time.monotonic() + timeout_s
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                if node.process is not None and node.process.poll() is not None:
                    self.stop()
                    raise BrokerError(
                        f"Kafka node {node.node_id} exited with {node.process.returncode}; "
                        f"{node.log_path}:\n{node.log_tail()}"
                    )
                if metadata_brokers(node.host, node.port) >= expected:
                    waiting.remove(node)
            if waiting and time.monotonic() > deadline:
                self.stop()
                node = waiting[0]
                raise BrokerError(
                    f"Kafka node {node.node_id} not ready after {timeout_s:.0f}s; "
                    f"{node.log_path}:\n{node.log_tail()}"
                )
            if waiting:
                time.sleep(0.1)


def _wait_or_kill(node: KafkaNode, timeout_s: float) -> None:
    process = node.process
    if process is None:
        return
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("kafka node did not stop in time; killed", extra={"node": node.node_id})
        process.kill()
        process.wait()
