"""`postbacks up`: the whole pipeline on one machine, in the foreground, no Docker.

A small supervisor: starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS
points elsewhere), creates the topics, then runs each service as its own child
process, restarting one that dies. Ctrl-C (or SIGTERM) stops the services first,
so in-flight requests drain while the broker still accepts them, and the broker last.
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
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ingest.auth import TokenAuth
from ingest.sources import load_sources, write_starter_sources
from postbacks.local.broker import (
    EmbeddedBroker,
    evict_crashed_outbound,
    evict_crashed_sink,
    evict_crashed_stream_worker,
    free_port,
)
from postbacks.local.children import spawn
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
    # Run after an unexpected exit, before the restart (e.g. evict a dead consumer-group member).
    before_restart: Callable[[], None] | None = None

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


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: EmbeddedBroker | None = None
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
            print(
                f"starting embedded Kafka-protocol broker (noida-db) in {data_dir / 'kafka'} ...", flush=True
            )
            self.broker = EmbeddedBroker(data_dir / "kafka").start()
            settings = settings.with_overrides(kafka_bootstrap_servers=self.broker.bootstrap_servers)
        sources_file = settings.effective_sources_file
        if not sources_file.exists():
            write_starter_sources(sources_file)
            print(f"wrote a starter sources file with a fresh token: {sources_file}", flush=True)
        settings = settings.with_overrides(
            data_dir=data_dir, sources_file=sources_file.resolve(), ingest_port=pick_ingest_port(settings)
        )
        self.settings = settings
        asyncio.run(ensure_topics(settings))
        env = {**os.environ, **settings.to_env()}
        logs = data_dir / "logs"
        cli = [sys.executable, "-m", "postbacks.cli"]
        self.services = [
            Service("ingest", [*cli, "ingest"], env, logs / "ingest.log"),
            Service(
                "stream",
                [*cli, "stream"],
                env,
                logs / "stream.log",
                before_restart=(lambda: self._evict("stream")) if self.broker is not None else None,
            ),
            Service(
                "sink",
                [*cli, "sink"],
                env,
                logs / "sink.log",
                before_restart=(lambda: self._evict("sink")) if self.broker is not None else None,
            ),
            Service(
                "outbound",
                [*cli, "outbound"],
                env,
                logs / "outbound.log",
                before_restart=(lambda: self._evict("outbound")) if self.broker is not None else None,
            ),
        ]
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
                    if service.before_restart is not None:
                        service.before_restart()
                    service.start()
            if self.broker is not None and not self.broker.running:
                print(f"the embedded broker stopped; see {self.broker.log_path}", flush=True)
                return
            time.sleep(0.2)

    def _evict(self, service: str) -> None:
        """The embedded broker keeps a crashed consumer in its group forever: remove it first.

        See README "Local stack" and postbacks.local.broker.evict_group_members.
        """
        s = self.settings
        try:
            if service == "stream":
                evict_crashed_stream_worker(s.kafka_bootstrap_servers, s.topic_prefix, s.stream_worker_name)
            elif service == "outbound":
                evict_crashed_outbound(s.kafka_bootstrap_servers, s.topic_prefix, s.outbound_worker_name)
            else:
                evict_crashed_sink(s.kafka_bootstrap_servers, s.topic_prefix)
        except Exception as exc:  # the restart goes ahead; Kafka's own timeout is the fallback
            print(f"could not evict the crashed {service} from its group: {exc!r}", flush=True)

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
        print(
            "\npostback-pipeline is up (Ctrl-C stops everything)\n"
            f"  ingest     {base}   (/postback, /click, /healthz, /metrics)\n"
            f"  stream     1 worker (dedup, attribution, enrichment) -> conversions.attributed\n"
            f"  clickhouse {s.effective_clickhouse_dsn}   (`postbacks report`, `postbacks sql`)\n"
            "  outbound   postbacks to the [publishers.<id>] of the sources file -> outbound_postbacks\n"
            f"  kafka      {s.kafka_bootstrap_servers}\n"
            f"  data dir   {s.data_dir}\n"
            f"  sources    {s.effective_sources_file}\n"
            f"  logs       {s.data_dir / 'logs'}\n\n"
            "try:\n"
            f"  curl '{base}/click?offer_id=o1&publisher_id=p1&format=json'\n"
            f"  curl '{base}/postback?clickid=CLICK_ID&event_name=purchase&txid=T1&payout=1.5&currency=EUR"
            f"&token={token}'\n",
            flush=True,
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
