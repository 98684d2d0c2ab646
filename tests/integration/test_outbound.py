"""Outbound postbacks on the real broker, to real HTTP endpoints started here: a healthy one, a flaky
one (503 the first times for some deliveries), a down one (always 503), a gone one (connection
refused) and a slow one (answers only when the test says so). Conversions are produced straight onto
`conversions.attributed` (the stream is tested on its own); `postbacks outbound` is a real process.

No assertion is about durations: "the slow one does not delay the others" is checked as an order
(the others finish while the slow one still holds its first requests).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from commands.local.broker import free_port
from commands.local.receiver import Received, Receiver, always
from outbound.plan import idempotency_key
from postbacks.settings import Settings
from postbacks.topics import Topics, topic_partitions
from schemas import CONVERSION, OUTBOUND_ATTEMPT, OUTBOUND_DEAD_LETTER, OUTBOUND_DELIVERY, Codec
from tests.helpers import SinkProcess, kill_process, produce, spawn_cli, stop_process

pytestmark = pytest.mark.integration

DLQ = OUTBOUND_DEAD_LETTER

FAST_RETRIES = {
    "OUTBOUND_BACKOFF_BASE_S": "0.05",
    "OUTBOUND_BACKOFF_MAX_S": "0.4",
    "OUTBOUND_MAX_ATTEMPTS": "6",
    "OUTBOUND_MAX_AGE_S": "120",
    "OUTBOUND_PAUSE_FAILURES": "5",
    "OUTBOUND_PAUSE_WINDOW_S": "30",
    "OUTBOUND_PAUSE_S": "0.5",
    "OUTBOUND_TIMEOUT_S": "5",
    "OUTBOUND_COMMIT_INTERVAL_S": "0.2",
}


def conversion(
    publisher: str, n: int, status: str = "approved", version: int | None = None
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "conversion_id": f"{publisher}-conv-{n}",
        "version": 1000 + n if version is None else version,
        "status": status,
        "dedup_key": f"click|{n}",
        "request_id": uuid.uuid4().hex,
        "received_at": now,
        "source": "default",
        "click_id": f"{publisher}-click-{n}",
        "event_name": "purchase",
        "is_install": False,
        "conversion_time": now - 1000,
        "click_time": now - 60_000,
        "click_to_conversion_s": 59,
        "offer_id": "o1",
        "publisher_id": publisher,
        "campaign_id": "cmp",
        "pub_click_id": f"pub-{publisher}-{n}",
        "transaction_id": f"T{n}",
        "payout": Decimal("1.250000"),
        "payout_currency": "EUR",
        "revenue_usd": Decimal("3.000000"),
        "payout_usd": Decimal("1.350000"),
        "extra": {},
        "enrichment": {},
    }


def key_of(record: dict[str, Any]) -> str:
    return idempotency_key(record["conversion_id"], record["version"], record["publisher_id"])


def publisher_table(name: str, url: str, **options: Any) -> str:
    lines = [
        f"[publishers.{name}]",
        f'url = "{url}/pb/{name}?cid={{clickid}}&p={{payout}}&c={{currency}}&s={{status}}"',
    ]
    for option, value in options.items():
        rendered = str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')
        lines.append(f"{option} = {rendered}")
    return "\n".join(lines) + "\n"


@dataclass
class Outbound:
    """`postbacks outbound` as a real child process."""

    settings: Settings
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_settings(cls, settings: Settings, workdir: Path, sources: str, **env: str) -> Outbound:
        path = workdir / "sources.toml"
        path.write_text(sources)
        full = {**os.environ, **settings.with_overrides(sources_file=path).to_env(), **FAST_RETRIES, **env}
        return cls(settings, full, workdir / "outbound.log")

    def start(self, timeout_s: float = 30.0) -> Outbound:
        before = self.log().count("outbound partitions ready")
        self.process = spawn_cli("outbound", self.env, self.log_path)
        deadline = time.monotonic() + timeout_s
        while self.log().count("outbound partitions ready") <= before:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"outbound not ready:\n{self.log()}"
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL (no flush, no commit); a static group member, it takes its partitions back on restart."""
        kill_process(self.process)

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(answer: Callable[[Received, int], int] | None = None) -> Receiver:
        receiver = Receiver(answer).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def wait_until(
    condition: Callable[[], bool], what: str, log: Callable[[], str], timeout_s: float = 40.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log()[-6000:]}"
        time.sleep(0.1)


def flaky_failures(key: str) -> int:
    """How many 503s the flaky endpoint answers a delivery before its 200: 0, 1 or 2, by key."""
    return int(key[:2], 16) % 3


def flaky_answer(request: Received, seen: int) -> int:
    return 503 if seen <= flaky_failures(request.idempotency_key or "") else 200


def gated(gate: threading.Event) -> Callable[[Received, int], int]:
    def answer(request: Received, seen: int) -> int:
        gate.wait(60)
        return 200

    return answer


def read_all(settings: Settings, topic: str, schema: str) -> list[dict[str, Any]]:
    """Every record of `topic` up to its current end (no waiting for more)."""
    return asyncio.run(_read_all(settings.kafka_bootstrap_servers, topic, schema))


async def _read_all(bootstrap: str, topic: str, schema: str) -> list[dict[str, Any]]:
    codec = Codec(schema)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    records: list[dict[str, Any]] = []
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        assert partitions, topic
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        received = {tp: 0 for tp in partitions}
        for tp in partitions:
            consumer.seek(tp, 0)  # explicitly: a racing position reset must not skip records
        while any(received[tp] < end[tp] for tp in partitions):
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                records += [codec.decode(m.value, m.headers) for m in messages]
                received[tp] = messages[-1].offset + 1 if messages else received[tp]
    finally:
        await consumer.stop()
    return records


def latest_states(settings: Settings) -> dict[str, str]:
    """Idempotency key -> latest recorded delivery state (what a restarted worker would load)."""
    topic = Topics(settings.topic_prefix).outbound_deliveries
    return {r["idempotency_key"]: r["state"] for r in read_all(settings, topic, OUTBOUND_DELIVERY)}


def test_each_eligible_conversion_is_delivered_once_retried_dead_lettered_or_paused(
    pipeline_settings: Settings, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    settings, topics = pipeline_settings, Topics(pipeline_settings.topic_prefix)
    gate = threading.Event()
    healthy = receivers()
    flaky = receivers(flaky_answer)
    down = receivers(always(503))
    slow = receivers(gated(gate))
    gone_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    sources = (
        publisher_table("healthy", healthy.url)
        + publisher_table("reversals", healthy.url, statuses=["approved", "rejected"])
        + publisher_table("flaky", flaky.url)
        + publisher_table("down", down.url, max_age_s=4)
        + publisher_table("gone", gone_url, max_age_s=4)
        + publisher_table("slow", slow.url, concurrency=2, timeout_s=60)
    )
    healthy_records = [conversion("healthy", n) for n in range(30)]
    updates = [
        conversion("healthy", 100, "pending", version=1),
        conversion("healthy", 100, "approved", version=2),
    ]
    reversals = [
        conversion("reversals", 1, "approved", version=1),
        conversion("reversals", 1, "rejected", version=2),
    ]
    not_eligible = [conversion("healthy", 200 + n, "pending") for n in range(5)] + [
        conversion("unconfigured", n) for n in range(5)
    ]
    replayed = healthy_records[:3]  # the stream re-emits identical versions after its own crash
    flaky_records = [conversion("flaky", n) for n in range(20)]
    down_records = [conversion("down", n) for n in range(20)]
    gone_records = [conversion("gone", n) for n in range(8)]
    slow_records = [conversion("slow", n) for n in range(6)]
    everything = (
        healthy_records + updates + reversals + not_eligible + flaky_records + down_records + gone_records
        + slow_records + replayed
    )  # fmt: skip
    produce(settings, topics.conversions_attributed, CONVERSION, everything, key_field="click_id")

    healthy_keys = {key_of(r) for r in [*healthy_records, updates[1]]}
    flaky_keys = {key_of(r) for r in flaky_records}
    dead_keys = {key_of(r) for r in down_records + gone_records}
    slow_keys = {key_of(r) for r in slow_records}
    outbound = Outbound.for_settings(settings, tmp_path, sources).start()
    try:
        wait_until(
            lambda: (
                set(healthy.counts()) >= healthy_keys | {key_of(r) for r in reversals}
                and set(flaky.counts()) >= flaky_keys
                and sum(1 for c in flaky.counts().values()) == len(flaky_keys)
                and all(flaky.counts()[k] == flaky_failures(k) + 1 for k in flaky_keys)
            ),
            "healthy and flaky deliveries",
            outbound.log,
        )
        # The slow endpoint still holds its first requests: the others did not wait for it.
        assert not gate.is_set() and 1 <= len(slow.received) <= 2
        wait_until(
            lambda: (
                {d["idempotency_key"] for d in read_all(settings, topics.outbound_dead_letter, DLQ)}
                >= dead_keys
            ),
            "dead letters",
            outbound.log,
        )
        dead = read_all(settings, topics.outbound_dead_letter, DLQ)
        assert {d["idempotency_key"] for d in dead} == dead_keys, outbound.log()[-4000:]
        gate.set()
        wait_until(lambda: set(slow.counts()) == slow_keys, "slow deliveries", outbound.log)
        wait_until(
            lambda: all(latest_states(settings).get(k) == "delivered" for k in slow_keys),
            "slow deliveries recorded",
            outbound.log,
        )
    finally:
        outbound.stop()

    # Healthy: exactly once each, by Idempotency-Key and by raw count; nothing ineligible, nothing twice.
    assert healthy.counts() == Counter(dict.fromkeys(healthy_keys | {key_of(r) for r in reversals}, 1))
    assert all(r.path in {"/pb/healthy", "/pb/reversals"} for r in healthy.received)
    # A status update passes on the wanted version only; a reversal is passed on when asked for.
    by_query = {r.query for r in healthy.received}
    assert "cid=pub-healthy-100&p=1.25&c=EUR&s=approved" in by_query
    assert {
        "cid=pub-reversals-1&p=1.25&c=EUR&s=approved",
        "cid=pub-reversals-1&p=1.25&c=EUR&s=rejected",
    } <= by_query
    # Flaky: each delivered after its retries, every retry with the same key.
    assert flaky.counts() == Counter({k: flaky_failures(k) + 1 for k in flaky_keys})
    assert sum(flaky.counts().values()) > len(flaky_keys)
    # Slow: once each.
    assert slow.counts() == Counter(dict.fromkeys(slow_keys, 1))
    # Down and gone: dead-lettered (attempts used up, or too old while paused), never delivered.
    assert {d["reason"] for d in dead} <= {"max_attempts", "max_age"}
    assert set(down.counts()) <= {key_of(r) for r in down_records}
    # Paused: far fewer requests than deliveries x attempts (the pause held the rest back).
    assert sum(down.counts().values()) < len(down_records) * 6 / 2, down.counts()
    log = outbound.log()
    assert "destination down paused" in log and "destination gone paused" in log
    assert "destination healthy paused" not in log and "destination slow paused" not in log

    attempts = read_all(settings, topics.outbound_attempts, OUTBOUND_ATTEMPT)
    delivered = Counter(a["idempotency_key"] for a in attempts if a["outcome"] == "delivered")
    assert delivered == Counter(
        dict.fromkeys(healthy_keys | flaky_keys | slow_keys | {key_of(r) for r in reversals}, 1)
    )
    requests_to_flaky = Counter(a["idempotency_key"] for a in attempts if a["publisher_id"] == "flaky")
    assert requests_to_flaky == flaky.counts()  # every request recorded, once
    final = {a["idempotency_key"]: a for a in sorted(attempts, key=lambda a: a["attempt"])}
    assert {k for k, a in final.items() if a["outcome"] == "dead"} == dead_keys


def test_a_killed_worker_does_not_fire_twice_except_in_the_recorded_crash_window(
    pipeline_settings: Settings, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """SIGKILL mid-run, restart: delivered deliveries are never sent again. The requests that were on
    the wire at the kill (their `sending` state recorded, their answer not) are the only ones that
    can arrive twice: resent with the same Idempotency-Key by a `resend_uncertain` publisher (the
    receiver can tell), or never resent and dead-lettered as `uncertain` by a strict one."""
    settings, topics = pipeline_settings, Topics(pipeline_settings.topic_prefix)
    gate = threading.Event()

    def steady(request: Received, seen: int) -> int:
        time.sleep(0.04)  # so the kill lands mid-run
        return 200

    healthy, slow, strict = receivers(steady), receivers(gated(gate)), receivers(gated(gate))
    sources = (
        publisher_table("healthy", healthy.url, concurrency=2)
        + publisher_table("slow", slow.url, concurrency=2, timeout_s=60)
        + publisher_table("strict", strict.url, concurrency=2, timeout_s=60, resend_uncertain=False)
    )
    sizes = {"healthy": 80, "slow": 4, "strict": 4}
    records = {name: [conversion(name, n) for n in range(count)] for name, count in sizes.items()}
    keys = {name: {key_of(r) for r in rs} for name, rs in records.items()}
    every = [r for rs in records.values() for r in rs]
    produce(settings, topics.conversions_attributed, CONVERSION, every, key_field="click_id")

    outbound = Outbound.for_settings(settings, tmp_path, sources).start()
    try:
        wait_until(
            lambda: len(healthy.received) >= 15 and len(slow.received) == 2 and len(strict.received) == 2,
            "a run in full swing",
            outbound.log,
        )
        on_the_wire = {name: set(r.counts()) for name, r in [("slow", slow), ("strict", strict)]}
        outbound.kill()
        states = latest_states(settings)
        uncertain = {k for k, state in states.items() if state == "sending"}
        # What was on the wire to the held endpoints is exactly what the recorded states call uncertain.
        assert on_the_wire["slow"] <= uncertain and on_the_wire["strict"] <= uncertain
        outbound.start()
        wait_until(
            lambda: set(healthy.counts()) == keys["healthy"], "healthy after the restart", outbound.log
        )
        gate.set()

        def decided() -> bool:
            states = latest_states(settings)
            return all(states.get(k) in {"delivered", "dead"} for k in keys["slow"] | keys["strict"])

        wait_until(decided, "slow and strict decided", outbound.log)
    finally:
        outbound.stop()

    # Healthy: every delivery arrived; a second arrival only for a key whose answer was unrecorded at
    # the kill (and then with the same Idempotency-Key, which is what the count is keyed by).
    counts = healthy.counts()
    assert set(counts) == keys["healthy"]
    twice = {k for k, n in counts.items() if n > 1}
    assert twice <= uncertain and max(counts.values()) <= 2, (twice, uncertain)
    assert len(twice) <= 2  # at most the destination's concurrency was on the wire
    # Slow (resend_uncertain = true): the two held requests arrive again after the restart, same keys.
    assert {k for k, n in slow.counts().items() if n == 2} == on_the_wire["slow"]
    assert sum(slow.counts().values()) == len(keys["slow"]) + len(on_the_wire["slow"])
    # Strict (resend_uncertain = false): never twice, by raw count; the uncertain ones are dead-lettered.
    assert strict.counts() == Counter(dict.fromkeys(keys["strict"], 1))
    dead = read_all(settings, topics.outbound_dead_letter, DLQ)
    assert {d["idempotency_key"] for d in dead if d["reason"] == "uncertain"} == on_the_wire["strict"]
    attempts = read_all(settings, topics.outbound_attempts, OUTBOUND_ATTEMPT)
    unknown = {a["idempotency_key"] for a in attempts if a["outcome"] == "unknown"}
    assert on_the_wire["slow"] | on_the_wire["strict"] <= unknown <= uncertain
    assert "delivery outcome unknown after a restart" in outbound.log()


def test_attempts_reach_clickhouse_once_each(
    pipeline_settings: Settings, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """outbound.attempts -> `outbound_postbacks`, exactly once: a record repeated after a crash (the
    worker's `unknown` for an attempt whose real record did get out) is dropped by its identity."""
    settings, topics = pipeline_settings, Topics(pipeline_settings.topic_prefix)
    healthy = receivers()
    flaky = receivers(flaky_answer)
    sources = publisher_table("healthy", healthy.url) + publisher_table("flaky", flaky.url)
    records = [conversion("healthy", n) for n in range(10)] + [conversion("flaky", n) for n in range(10)]
    produce(settings, topics.conversions_attributed, CONVERSION, records, key_field="click_id")
    (tmp_path / "outbound").mkdir()
    outbound = Outbound.for_settings(settings, tmp_path / "outbound", sources).start()
    try:
        flaky_keys = {key_of(r) for r in records if r["publisher_id"] == "flaky"}
        wait_until(
            lambda: (
                len(healthy.counts()) == 10
                and flaky.counts() == Counter({k: flaky_failures(k) + 1 for k in flaky_keys})
            ),
            "deliveries",
            outbound.log,
        )
        wait_until(
            lambda: (
                len(read_all(settings, topics.outbound_attempts, OUTBOUND_ATTEMPT))
                == sum(healthy.counts().values()) + sum(flaky.counts().values())
            ),
            "attempt records",
            outbound.log,
        )
    finally:
        outbound.stop()
    attempts = read_all(settings, topics.outbound_attempts, OUTBOUND_ATTEMPT)
    first = next(a for a in attempts if a["publisher_id"] == "healthy")
    repeat = {k: v for k, v in first.items() if k != "_key"}
    repeat.update(outcome="unknown", reason="crashed", http_status=None, latency_ms=None)
    produce(settings, topics.outbound_attempts, OUTBOUND_ATTEMPT, [repeat], key_field="idempotency_key")

    sink = SinkProcess.for_settings(settings, tmp_path / "sink").start()
    try:
        expected = {(a["idempotency_key"], a["attempt"]): a["outcome"] for a in attempts}
        deadline = time.monotonic() + 30
        rows: list[list[Any]] = []
        while time.monotonic() < deadline:
            rows = sink.query("SELECT idempotency_key, attempt, outcome FROM outbound_postbacks")
            if len(rows) >= len(expected):
                break
            time.sleep(0.3)
        time.sleep(1.0)  # the repeated record comes last: give it the chance to be (wrongly) inserted
        rows = sink.query("SELECT idempotency_key, attempt, outcome FROM outbound_postbacks")
        assert {(k, a): o for k, a, o in rows} == expected and len(rows) == len(expected)
        by_publisher = {
            p: (int(d), int(n))
            for p, d, n in sink.query(
                "SELECT publisher_id, sumIf(attempts, outcome = 'delivered'), sum(requests) "
                "FROM outbound_hourly GROUP BY publisher_id"
            )
        }
        assert by_publisher == {
            "healthy": (10, 10),
            "flaky": (10, sum(flaky.counts().values())),
        }
    finally:
        sink.stop()
