"""Told to stop with the broker gone for good, every service exits within SHUTDOWN_TIMEOUT_S."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from commands.local.broker import LocalKafka
from postbacks.settings import Settings
from tests.helpers import IngestProcess, SinkProcess, StreamWorker, create_topics, kill_process, spawn_cli

pytestmark = pytest.mark.integration

DEADLINE_S = 6.0


def _outbound(settings: Settings, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = workdir / "outbound.log"
    process = spawn_cli("outbound", {**os.environ, **settings.to_env()}, log_path)
    deadline = time.monotonic() + 60
    while "outbound partitions ready" not in (log_path.read_text() if log_path.exists() else ""):
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    return process, log_path


def test_every_service_stops_in_time_when_kafka_is_gone(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "kafka").start()
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_partitions=2,
        topic_prefix=f"d{uuid.uuid4().hex[:8]}.",
        data_dir=tmp_path,
        shutdown_timeout_s=DEADLINE_S,
        stream_metrics_port=0,
        sink_metrics_port=0,
        outbound_metrics_port=0,
        clickhouse_http_port=0,
    )
    create_topics(settings)
    services: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        with IngestProcess.start(settings, tmp_path) as ingest:
            services["ingest"] = (ingest.process, ingest.log_path)
            stream = StreamWorker.for_settings(settings, tmp_path).start()
            assert stream.process is not None
            services["stream"] = (stream.process, stream.log_path)
            sink = SinkProcess.for_settings(settings, tmp_path / "sink").start()
            assert sink.process is not None
            services["sink"] = (sink.process, sink.log_path)
            services["outbound"] = _outbound(settings, tmp_path)

            broker.kill()
            time.sleep(1)  # the clients see the connections drop
            stopped = time.monotonic()
            for process, _ in services.values():
                process.terminate()
            took: dict[str, float] = {}
            while len(took) < len(services) and time.monotonic() < stopped + DEADLINE_S + 3:
                for name, (process, _) in services.items():
                    if name not in took and process.poll() is not None:
                        took[name] = time.monotonic() - stopped
                time.sleep(0.05)
            for name, (process, log_path) in services.items():
                text = log_path.read_text()
                assert name in took, f"{name} still running:\n{text[-3000:]}"
                # Either it finished its stop, or it says why it did not.
                assert process.returncode == 0 or "shutdown deadline passed" in text, (name, text[-3000:])
    finally:
        for process, _ in services.values():
            kill_process(process)
        broker.kill()
