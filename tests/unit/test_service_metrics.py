"""The services' metrics pieces that need no broker: lag arithmetic and the scrape-time collectors."""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from outbound.metrics import Destinations
from postbacks.metrics import lag_by_partition, serve
from stream import metrics as stream_metrics
from stream.decide import Emit


def test_lag_counts_from_the_commit_or_else_the_log_start() -> None:
    ends = {"a": 100, "b": 50, "c": 7}
    starts = {"a": 0, "b": 40, "c": 0}
    committed = {"a": 90, "c": 9}  # c: committed past a truncated end, never negative
    assert lag_by_partition(ends, starts, committed) == {"a": 10, "b": 10, "c": 0}


@dataclass
class FakeDestination:
    waiting: int
    in_flight: int
    paused: bool
    counts: Counter[str] = field(default_factory=Counter)


def test_outbound_collector_reads_destinations_at_scrape_time() -> None:
    registry = CollectorRegistry()
    destinations = {
        "p1": FakeDestination(3, 1, False, Counter(delivered=5, retry=2)),
        "p2": FakeDestination(9, 0, True, Counter(dead=1)),
    }
    registry.register(Destinations(lambda: destinations))
    text = generate_latest(registry).decode()
    assert 'postbacks_outbound_waiting_deliveries{publisher="p2"} 9.0' in text
    assert 'postbacks_outbound_publisher_paused{publisher="p2"} 1.0' in text
    assert "postbacks_outbound_paused_publishers 1.0" in text
    assert 'postbacks_outbound_deliveries_total{outcome="delivered",publisher="p1"} 5.0' in text
    destinations["p2"].paused = False
    assert "postbacks_outbound_paused_publishers 0.0" in generate_latest(registry).decode()


@dataclass
class FakeStream:
    processed: dict[str, int]
    datadir: Path = Path("/nonexistent")


def test_stream_records_in_and_out_and_state_size(tmp_path: Path) -> None:
    (tmp_path / "tables" / "click-state").mkdir(parents=True)
    (tmp_path / "tables" / "click-state" / "000001.sst").write_bytes(b"x" * 1000)
    (tmp_path / "LOCK").write_bytes(b"ab")
    registry = CollectorRegistry()
    registry.register(stream_metrics.StreamRecords(FakeStream({"clicks": 4, "postbacks": 2}, tmp_path)))
    before = stream_metrics.EMITTED["conversion"]
    stream_metrics.count_out([Emit("conversion", b"k", b"v", 1), Emit("rejected", b"k", b"v", 2)])
    text = generate_latest(registry).decode()
    assert 'postbacks_stream_records_in_total{kind="clicks"} 4.0' in text
    assert f'postbacks_stream_records_out_total{{kind="conversion"}} {before + 1}.0' in text
    assert "postbacks_stream_state_bytes 1002.0" in text


def test_metrics_server_takes_a_free_port_when_its_own_is_taken() -> None:
    registry = CollectorRegistry()
    registry.register(stream_metrics.StreamRecords(FakeStream({"clicks": 1})))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = serve(registry, "127.0.0.1", taken.getsockname()[1])
        assert port != taken.getsockname()[1]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'postbacks_stream_records_in_total{kind="clicks"} 1.0' in text
