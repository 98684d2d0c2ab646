"""`postbacks up`: the whole pipeline on one machine, in the foreground, no Docker.

A small supervisor: starts Apache Kafka (one KRaft node, or `--brokers 3` for a
replicated cluster; nothing when KAFKA_BOOTSTRAP_SERVERS points at one), creates the
topics, then runs each service as its own child process, restarting one that dies.
Ctrl-C (or SIGTERM) stops the services first, so in-flight requests drain while the
broker still accepts them, and the broker last.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from commands.local.broker import LocalKafka, free_port
from commands.local.children import spawn
from ingest.auth import TokenAuth
from ingest.sources import load_sources, write_starter_sources
from postbacks.settings import Settings
from postbacks.topics import ensure_topics

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


@dataclass
class Service:
    """One child process of the stack: ingest, a stream worker, the sink, the outbound worker."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self) -> None:
        self.process = spawn(self.argv, self.log_path, self.env)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 20.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pick_ingest_port(settings: Settings) -> int:
    """INGEST_PORT when set; otherwise 8080 if free, else any free port (printed in the banner)."""
    if "INGEST_PORT" in os.environ:
        return settings.ingest_port
    try:
        with socket.socket() as sock:
            sock.bind((settings.ingest_host, settings.ingest_port))
        return settings.ingest_port
    except OSError:
        return free_port(settings.ingest_host)


def pick_port(env_name: str, host: str, default: int) -> int:
    """The variable's port when set; otherwise `default` if free, else any free port."""
    if env_name in os.environ:
        return int(os.environ[env_name])
    try:
        with socket.socket() as sock:
            sock.bind((host, default))
        return default
    except OSError:
        return free_port(host)


class LocalStack:
    def __init__(self, settings: Settings, brokers: int = 1) -> None:
        self.settings = settings
        self.brokers = brokers
        self.broker: LocalKafka | None = None
        self.services: list[Service] = []
        self._stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self._start()
            self._print_banner()
            self._supervise()
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self) -> None:
        settings = self.settings
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "logs").mkdir(exist_ok=True)
        if not settings.kafka_bootstrap_servers:
            kafka_dir = data_dir / ("kafka" if self.brokers == 1 else f"kafka-{self.brokers}")
            print(f"starting Apache Kafka ({self.brokers} KRaft node(s)) in {kafka_dir} ...", flush=True)
            self.broker = LocalKafka(kafka_dir, nodes=self.brokers).start()
            print(f"{self.broker.describe()}, ready in {self.broker.start_seconds:.1f} s", flush=True)
            settings = settings.with_overrides(
                kafka_bootstrap_servers=self.broker.bootstrap_servers,
                topic_replication_factor=self.broker.replication_factor,
            )
        sources_file = settings.effective_sources_file
        if not sources_file.exists():
            write_starter_sources(sources_file)
            print(f"wrote a starter sources file with a fresh token: {sources_file}", flush=True)
        host = settings.metrics_host
        settings = settings.with_overrides(
            data_dir=data_dir,
            sources_file=sources_file.resolve(),
            ingest_port=pick_ingest_port(settings),
            stream_metrics_port=pick_port("STREAM_METRICS_PORT", host, settings.stream_metrics_port),
            sink_metrics_port=pick_port("SINK_METRICS_PORT", host, settings.sink_metrics_port),
            outbound_metrics_port=pick_port("OUTBOUND_METRICS_PORT", host, settings.outbound_metrics_port),
        )
        self.settings = settings
        asyncio.run(ensure_topics(settings))
        env = {**os.environ, **settings.to_env()}
        logs = data_dir / "logs"
        cli = [sys.executable, "-m", "commands.cli"]
        self.services = [
            Service(name, [*cli, name], env, logs / f"{name}.log")
            for name in ("ingest", "stream", "sink", "outbound")
        ]
        from sinks.endpoint import endpoint_file

        endpoint_file(data_dir).unlink(missing_ok=True)  # a killed run's file names a dead port
        for service in self.services:
            service.start()

    def _supervise(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            for service in self.services:
                code = service.exited()
                if code is None or self._stopping:
                    continue
                if service.next_start == 0.0:
                    delay = RESTART_BACKOFF_S[min(service.restarts, len(RESTART_BACKOFF_S) - 1)]
                    print(
                        f"{service.name} exited with {code}; restarting in {delay:.0f}s "
                        f"(log: {service.log_path})",
                        flush=True,
                    )
                    service.next_start = now + delay
                elif now >= service.next_start:
                    service.restarts += 1
                    service.next_start = 0.0
                    service.start()
            if self.broker is not None and not any(node.running for node in self.broker.nodes):
                print(f"Kafka stopped; see the broker.log files under {self.broker.data_dir}", flush=True)
                return
            time.sleep(0.2)

    def _shutdown(self) -> None:
        print("stopping ...", flush=True)
        for service in reversed(self.services):
            service.stop()
        if self.broker is not None:
            self.broker.stop()
        print("stopped.", flush=True)

    def _print_banner(self) -> None:
        s = self.settings
        base = f"http://{s.ingest_host}:{s.ingest_port}"
        token = "TOKEN"
        registry = load_sources(s.effective_sources_file)
        default = registry.get(None)
        if default is not None and isinstance(default.auth, TokenAuth):
            token = default.auth.tokens[0]
        self._wait_for_ingest(base)
        sql = self._sql_endpoint_lines()
        metrics = "  ".join(
            f"{name} http://{s.metrics_host}:{port}/metrics"
            for name, port in (
                ("stream", s.stream_metrics_port),
                ("sink", s.sink_metrics_port),
                ("outbound", s.outbound_metrics_port),
            )
        )
        print(
            "\npostback-pipeline is up (Ctrl-C stops everything)\n"
            f"  ingest     {base}   (/postback, /click, /healthz, /metrics)\n"
            f"  stream     1 worker (dedup, attribution, enrichment) -> conversions.attributed\n"
            f"  clickhouse {s.effective_clickhouse_dsn}   (`postbacks report`, `postbacks sql`)\n"
            f"{sql}"
            "  outbound   postbacks to the [publishers.<id>] of the sources file -> outbound_postbacks\n"
            f"  metrics    {metrics}\n"
            f"  kafka      {s.kafka_bootstrap_servers}"
            f"{'   (' + self.broker.describe().split(' on ')[0] + ')' if self.broker else ''}\n"
            f"  data dir   {s.data_dir}\n"
            f"  sources    {s.effective_sources_file}\n"
            f"  logs       {s.data_dir / 'logs'}\n\n"
            "try:\n"
            f"  curl '{base}/click?offer_id=o1&publisher_id=p1&format=json'\n"
            f"  curl '{base}/postback?clickid=CLICK_ID&event_name=purchase&txid=T1&payout=1.5&currency=EUR"
            f"&token={token}'\n",
            flush=True,
        )

    def _sql_endpoint_lines(self, timeout_s: float = 60.0) -> str:
        """The embedded engine's ClickHouse HTTP interface, once the sink serves it (none with a server)."""
        from sinks.clickhouse import is_embedded
        from sinks.endpoint import read_endpoint

        if not is_embedded(self.settings.effective_clickhouse_dsn):
            return ""
        deadline = time.monotonic() + timeout_s
        info = read_endpoint(self.settings.data_dir)
        while info is None and time.monotonic() < deadline and not self._stopping:
            time.sleep(0.2)
            info = read_endpoint(self.settings.data_dir)
        if info is None:
            return f"  sql        (not up after {timeout_s:.0f}s; see {self.services[2].log_path})\n"
        made_up = ""
        if info["generated_password"]:
            made_up = "   (made up for this run: no [sql] table in the sources file)"
        login = urllib.parse.urlencode({"user": info["user"], "password": info["password"]})
        return (
            f"  sql        {info['url']}   (ClickHouse HTTP interface, read-only; any ClickHouse client)\n"
            f"             user {info['user']}  password {info['password']}{made_up}\n"
            f"  overview   {info['url']}/overview/#{login}   (live charts and health, in a browser)\n"
        )

    def _wait_for_ingest(self, base: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stopping:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        print(
            f"warning: ingest not healthy after {timeout_s:.0f}s; see {self.services[0].log_path}", flush=True
        )
