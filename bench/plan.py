"""How long and how big each stage runs: the full plan, and the --quick one that only proves it works."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Plan:
    window_s: float = 10.0  # one window of steady state
    windows: int = 3  # windows per figure; the median is reported
    warmup_s: float = 2.0  # after a stage's first progress, before the first window
    connections: int = 64  # HTTP keep-alive connections of the closed-loop load generator
    e2e_rate: float = 300.0  # postbacks/s offered end to end: well within one stream worker's capacity
    e2e_seconds: float = 20.0
    e2e_clicks: int = 5_000
    # Inputs sized so the windows run on input at today's rates (~5k postbacks/s, ~15k clicks/s,
    # ~100k rows/s): smaller ones ran out first and left windows of 2-4 s.
    stream_clicks: int = 20_000  # clicks preloaded before the stream stage's postbacks
    stream_postbacks: int = 300_000  # ~15 events per click, 10% sender retries among them
    # Half get one postback, half none; and the click path, which reads them as a backlog at
    # 20-40k clicks/s here: 1.2M fill its 1 s warm-up and three 10 s windows at ~38k/s.
    stream_sparse_clicks: int = 1_200_000
    sink_rows: int = 3_500_000
    profile_dir: Path | None = None  # py-spy profiles of each stage's service, when set
    plot: Path | None = None  # the end-to-end latency distribution as a PNG, when set
    ingest_workers: int = 1  # granian worker processes of the ingest stage's service
    quick: bool = False

    @classmethod
    def smoke(cls) -> Plan:
        """Seconds, not minutes: every stage runs end to end on tiny inputs (the figures mean nothing)."""
        return cls(
            window_s=1.0,
            windows=1,
            warmup_s=0.3,
            connections=8,
            e2e_rate=100.0,
            e2e_seconds=2.0,
            e2e_clicks=200,
            stream_clicks=300,
            stream_postbacks=3_000,
            stream_sparse_clicks=2_000,
            sink_rows=20_000,
        )
