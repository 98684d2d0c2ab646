"""The fault driver: known traffic over HTTP, components killed at seeded moments, exact checks.

Traffic is `postbacks demo`'s synthetic day (clicks, installs, status updates, chargebacks,
purchases, sender retries, click injection, unknown clicks, malformed requests), sent by
a sender that retries 503s and unanswered requests, as real senders do. A request the
ingest never answered may still have landed, so the checks compare ClickHouse with the
*accepted input*, what Kafka holds, record by record:

- every click and postback the ingest acknowledged is in Kafka;
- every click on `clicks.raw` is in ClickHouse once (no loss, no double count);
- every postback on `postbacks.raw` has exactly one outcome row (a conversion version, a
  refusal or a duplicate), and every refusal on `postbacks.rejected` one refusal row;
- the business totals (approved conversions, pending, reversed, revenue and payout in USD)
  equal the plan's, which sender retries cannot change.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from commands.demo import Expected, Progress, plan_day, play
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK, POSTBACK_RAW, POSTBACK_REJECTED
from stream.rules.fx import load_rates
from tests.helpers import IngestProcess, SinkProcess, StreamWorker, read_topic
from tests.integration.test_stream import STREAM_ENV  # short timers: a trial drains in seconds

COMPONENTS = ("stream", "sink", "ingest")


@dataclass
class Pipeline:
    """Ingest, one stream worker and the sink as real processes on the session broker."""

    settings: Settings
    ingest: IngestProcess
    stream: StreamWorker
    sink: SinkProcess

    def crash(self, component: str) -> None:
        """SIGKILL, then start it again, as a supervisor (or `postbacks up`) would."""
        if component == "stream":
            self.stream.kill()
            self.stream.start()
        elif component == "sink":
            self.sink.kill()
            self.sink.start()
        else:
            self.ingest.kill()
            self.ingest.restart()

    def revive(self) -> list[str]:
        """Start again whatever has exited on its own, as a supervisor would; returns what it started."""
        exited = [
            name
            for name, process in (
                ("stream", self.stream.process),
                ("sink", self.sink.process),
                ("ingest", self.ingest.process),
            )
            if process is not None and process.poll() is not None
        ]
        for name in exited:
            self.crash(name)  # already dead: the kill is a no-op, the restart is what counts
        return exited


@contextmanager
def pipeline(settings: Settings, workdir: Path, **ingest_env: str) -> Iterator[Pipeline]:
    with IngestProcess.start(settings, workdir, **ingest_env) as ingest:
        stream = StreamWorker.for_settings(settings, workdir, **STREAM_ENV).start()
        sink = SinkProcess.for_settings(settings, workdir / "sink").start()
        try:
            yield Pipeline(settings, ingest, stream, sink)
        finally:
            sink.stop()
            stream.stop()


@dataclass
class Trial:
    component: str
    at_s: float  # seconds after traffic started


@dataclass
class Traffic:
    """The plan, played in a thread while faults are injected from the test's thread."""

    base_url: str
    token: str
    clicks: int
    rate: float
    seed: int
    expected: Expected = field(init=False)
    progress: Progress = field(init=False)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        # Without the demo's feature scripts: they need its vendor sources and its admin calls after
        # the traffic (test_demo.py plays them); the fault pipeline's sources file has neither.
        self.scripts, self.expected = plan_day(self.clicks, load_rates(None), self.seed, features=False)
        total = sum(len(s.postbacks) + (s.click is not None) for s in self.scripts)
        self.progress = Progress(total)
        self.thread = threading.Thread(target=self._play, daemon=True)

    def _play(self) -> None:
        try:
            asyncio.run(play(self.base_url, self.token, self.scripts, self.rate, self.progress, 16))
        except BaseException as exc:  # reported by wait(), in the test's thread
            self.error = exc

    def start(self) -> Traffic:
        self.started = time.monotonic()
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout_s: float = 120) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "traffic did not finish"
        if self.error is not None:
            raise self.error


def inject(
    pipeline: Pipeline, traffic: Traffic, components: tuple[str, ...], trials: int, seed: int
) -> list[Trial]:
    """Kill a component at a random moment, restart it, repeat; some land after traffic ended."""
    rng = random.Random(seed)
    done = []
    for _ in range(trials):
        time.sleep(rng.uniform(0.2, 2.5))
        component = rng.choice(components)
        done.append(Trial(component, round(time.monotonic() - traffic.started, 1)))
        pipeline.crash(component)
    return done


def everything(settings: Settings, topic: str, schema: str) -> list[dict[str, Any]]:
    return read_topic(settings, topic, schema, expect=10**9, timeout_s=3)


@dataclass
class Check:
    """What must hold once the pipeline has drained; `problems` empty means it all does."""

    problems: list[str]
    figures: dict[str, Any]


def check(pipeline: Pipeline, traffic: Traffic) -> Check:
    settings, sink, expected = pipeline.settings, pipeline.sink, traffic.expected
    topics = Topics(settings.topic_prefix)
    problems: list[str] = []
    clicks = {c["click_id"] for c in everything(settings, topics.clicks_raw, CLICK)}
    raw = [p["request_id"] for p in everything(settings, topics.postbacks_raw, POSTBACK_RAW)]
    refused_records = everything(settings, topics.postbacks_rejected, POSTBACK_REJECTED)
    refused = [r["request_id"] for r in refused_records]
    raw_ids = set(raw)
    lost_acks = [c for c in traffic.progress.acked_clicks if c not in clicks]
    lost_acks += [r for r in traffic.progress.acked_postbacks if r not in raw_ids]
    if lost_acks:
        problems.append(f"acknowledged but not in Kafka: {lost_acks[:5]} ({len(lost_acks)})")

    def multiset(sql: str) -> Counter[str]:
        return Counter(str(row[0]) for row in sink.query(sql))

    stored_clicks = multiset("SELECT click_id FROM clicks")
    outcomes = multiset(
        "SELECT request_id FROM conversion_versions UNION ALL "
        "SELECT request_id FROM rejected_postbacks WHERE stage = 'stream' UNION ALL "
        "SELECT request_id FROM duplicate_postbacks"
    )
    refusals = multiset("SELECT request_id FROM rejected_postbacks")
    for name, stored, accepted in (
        ("clicks", stored_clicks, Counter(clicks)),
        ("postback outcomes", outcomes, Counter(raw)),
        # The stream re-emits its refusals after a crash (at least once, same request id): distinct.
        ("refusals", refusals, Counter(set(refused))),
    ):
        lost, doubled = accepted - stored, {k: n for k, n in stored.items() if n > 1}
        extra = stored - accepted
        if name == "refusals" and lost:  # where they were on the topic, to tell a stall from a drop
            where = {r["request_id"]: (r["_at"], r["stage"], r["reason"]) for r in refused_records}
            stored_at = sink.query(
                "SELECT kafka_partition, max(kafka_offset) FROM rejected_postbacks GROUP BY 1"
            )
            problems.append(f"lost refusals (partition/offset, stage, reason): {[where[k] for k in lost]}")
            problems.append(f"highest refusal offset stored per partition: {sorted(map(tuple, stored_at))}")
        if lost or doubled or extra:
            problems.append(
                f"{name}: lost {len(lost)}, counted twice {len(doubled)}, unknown {len(extra)} "
                f"(e.g. {list(lost)[:3]} {list(doubled)[:3]} {list(extra)[:3]})"
            )
    [[approved, pending, reversed_, revenue, payout]] = sink.query(
        "SELECT countIf(status = 'approved'), countIf(status = 'pending'), countIf(status = 'rejected'), "
        "sumIf(revenue_usd, status = 'approved'), sumIf(payout_usd, status = 'approved') "
        "FROM conversions FINAL"
    )
    business = {
        "approved": (expected.conversions, int(approved)),
        "pending": (expected.pending, int(pending)),
        "reversed": (expected.reversed, int(reversed_)),
        "revenue_usd": (expected.revenue_usd, Decimal(str(revenue))),
        "payout_usd": (expected.payout_usd, Decimal(str(payout))),
    }
    problems += [f"{k}: expected {want}, got {got}" for k, (want, got) in business.items() if want != got]
    figures = {
        "requests_sent": traffic.progress.sent,
        "acked": len(traffic.progress.acked_clicks) + len(traffic.progress.acked_postbacks),
        "clicks_accepted": len(clicks),
        "clicks_counted": sum(stored_clicks.values()),
        "postbacks_accepted": len(raw),
        "postback_outcomes_counted": sum(outcomes.values()),
        "statuses": dict(traffic.progress.statuses),
    }
    return Check(problems, figures)


def wait_until_exact(pipeline: Pipeline, traffic: Traffic, timeout_s: float = 150) -> Check:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check(pipeline, traffic)
        if not result.problems or time.monotonic() > deadline:
            return result
        time.sleep(2)
