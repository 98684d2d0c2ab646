"""A stream of clicks and postbacks covering every decision, with the outcome each must get.

Records go straight to the source topics (ingest is tested on its own), with click
times in the past so windows and CTIT can be exercised without waiting days.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_REJECTED, Codec
from tests.helpers import all_partitions

HOUR = 3_600_000
DAY = 24 * HOUR


@dataclass
class Scenario:
    now: int = field(default_factory=lambda: int(time.time() * 1000))
    clicks: list[dict[str, Any]] = field(default_factory=list)
    postbacks: list[dict[str, Any]] = field(default_factory=list)
    late_clicks: list[dict[str, Any]] = field(default_factory=list)  # sent after the postbacks
    expected: list[tuple[str, str, str]] = field(default_factory=list)  # (request_id, kind, status/reason)

    def click(self, click_id: str, ago_ms: int, late: bool = False) -> dict[str, Any]:
        record = {
            "click_id": click_id,
            "clicked_at": self.now - ago_ms,
            "offer_id": "o1",
            "publisher_id": "p1",
            "campaign_id": "cmp",
            "ip": "198.51.100.4",
            "user_agent": "UA/1",
            "extra": {},
        }
        (self.late_clicks if late else self.clicks).append(record)
        return record

    def postback(self, click_id: str, kind: str, outcome: str, *, after_ms: int, **fields: Any) -> str:
        click_at = (
            next(c["clicked_at"] for c in self.clicks + self.late_clicks if c["click_id"] == click_id)
            if any(c["click_id"] == click_id for c in self.clicks + self.late_clicks)
            else self.now - HOUR
        )
        request_id = uuid.uuid4().hex
        record = {
            "request_id": request_id,
            "received_at": self.now,
            "source": "default",
            "method": "GET",
            "click_id": click_id,
            "sender_ip": "203.0.113.9",
            "extra": {},
            "install_time": click_at + after_ms,
            **fields,
        }
        if fields.get("event_name"):
            record["event_time"] = click_at + after_ms
        self.postbacks.append(record)
        self.expected.append((request_id, kind, outcome))
        return request_id


def build(tag: str = "") -> Scenario:
    s = Scenario()
    p = f"{tag}{uuid.uuid4().hex[:6]}-"
    s.click(p + "c1", 2 * HOUR)
    s.postback(p + "c1", "conversion", "approved", after_ms=HOUR, payout=Decimal("1.50"), currency="EUR")
    s.postback(p + "c1", "duplicate", "same_key", after_ms=HOUR, payout=Decimal("1.50"), currency="EUR")
    s.click(p + "c2", HOUR)
    s.postback(p + "c2", "rejected", "ctit_too_short", after_ms=2_000)
    s.click(p + "c3", 9 * DAY)
    s.postback(p + "c3", "rejected", "outside_window", after_ms=8 * DAY)
    s.click(p + "c4", 3 * DAY)
    s.postback(
        p + "c4",
        "conversion",
        "approved",
        after_ms=DAY,
        event_name="purchase",
        transaction_id="A",
        revenue=Decimal("10"),
        currency="EUR",
    )
    s.postback(
        p + "c4",
        "conversion",
        "approved",
        after_ms=2 * DAY,
        event_name="purchase",
        transaction_id="B",
        revenue=Decimal("4.5"),
        currency="USD",
    )
    s.postback(
        p + "c4",
        "duplicate",
        "same_key",
        after_ms=DAY,
        event_name="purchase",
        transaction_id="A",
        revenue=Decimal("10"),
        currency="EUR",
    )
    s.click(p + "c5", 5 * HOUR)
    s.postback(p + "c5", "conversion", "pending", after_ms=HOUR, status="pending", payout=Decimal(2))
    s.postback(p + "c5", "conversion", "approved", after_ms=HOUR, status="approved")
    s.postback(p + "c5", "duplicate", "status_not_advanced", after_ms=HOUR, status="pending")
    s.click(p + "c6", 2 * HOUR)
    s.postback(p + "c6", "rejected", "unknown_currency", after_ms=HOUR, revenue=Decimal(1), currency="XAU")
    s.click(p + "c7", 2 * HOUR, late=True)
    s.postback(p + "c7", "conversion", "approved", after_ms=HOUR, payout=Decimal(3))
    s.postback(p + "c8", "rejected", "unknown_click", after_ms=HOUR)
    s.click(p + "c9", 2 * HOUR)
    s.postback(p + "c9", "rejected", "blocked_by_sender", after_ms=HOUR, blocked_reason="click_flood")
    return s


def collect(settings: Settings, expect: int, timeout_s: float = 60.0) -> list[tuple[str, str, str]]:
    """Distinct outputs as (request_id, kind, status or reason); identical content per identity asserted."""
    return asyncio.run(_collect(settings, expect, timeout_s))


async def _collect(settings: Settings, expect: int, timeout_s: float) -> list[tuple[str, str, str]]:
    topics = Topics(settings.topic_prefix)
    codecs = {
        topics.conversions_attributed: ("conversion", Codec(CONVERSION)),
        topics.postbacks_rejected: ("rejected", Codec(POSTBACK_REJECTED)),
        topics.postbacks_duplicates: ("duplicate", Codec(POSTBACK_DUPLICATE)),
    }
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    seen: dict[tuple[str, Any], tuple[bytes, tuple[str, str, str]]] = {}
    await consumer.start()
    try:
        partitions = await all_partitions(consumer, list(codecs))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        settle_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, messages in batch.items():
                kind, codec = codecs[tp.topic]
                for m in messages:
                    r = codec.decode(m.value, m.headers)
                    if kind == "conversion":
                        identity: tuple[str, Any] = (kind, (r["conversion_id"], r["version"]))
                        summary = (r["request_id"], kind, r["status"])
                    else:
                        identity = (kind, r["request_id"])
                        summary = (r["request_id"], kind, r["reason"])
                    previous = seen.setdefault(identity, (m.value, summary))
                    if previous[0] != m.value:
                        first = codec.decode(previous[0], m.headers)
                        changed = {k: (first[k], r[k]) for k in r if first.get(k) != r[k]}
                        raise AssertionError(f"{identity} emitted twice with different content: {changed}")
            if len(seen) >= expect and settle_until is None:
                settle_until = time.monotonic() + 2.0  # catch anything beyond what was expected
            if settle_until is not None and time.monotonic() >= settle_until:
                break
    finally:
        await consumer.stop()
    return sorted(summary for _, summary in seen.values())
