"""The records the benchmarks feed the pipeline: clicks and the postbacks that follow them.

Shaped like an ad platform's day: a click leads to an install and in-app events,
some in another currency, and senders retry (the retry carries a new request id and
the same transaction id, so the stream's dedup has real work). Times sit an hour
after the clicks, inside every attribution window and past the CTIT floor, so the
figures measure the path taken by accepted conversions.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from bench.stack import Record
from schemas import CLICK, POSTBACK_RAW, Codec

USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
DISTINCT_USER_AGENTS = (
    20_000  # a platform sees a great variety: one user agent for every click flatters parsing
)


def user_agent(i: int) -> str:
    """A plausible mobile or desktop user agent for the i-th click (i wraps at DISTINCT_USER_AGENTS)."""
    n = i % DISTINCT_USER_AGENTS
    build = f"{90 + n % 37}.0.{1000 + n // 37 % 5000}.{n % 97}"
    kind = n % 4
    if kind == 0:
        return (
            f"Mozilla/5.0 (Linux; Android {8 + n % 7}; SM-G{100 + n % 900}F) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) Chrome/{build} Mobile Safari/537.36"
        )
    if kind == 1:
        return (
            f"Mozilla/5.0 (iPhone; CPU iPhone OS {12 + n % 6}_{n % 7} like Mac OS X) AppleWebKit/605.1.15 "
            f"(KHTML, like Gecko) Version/{12 + n % 6}.0 Mobile/15E{100 + n % 900} Safari/604.1"
        )
    if kind == 2:
        return (
            f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{build} Safari/537.36"
        )
    return (
        f"Dalvik/2.1.0 (Linux; U; Android {8 + n % 7}; Redmi Note {5 + n % 8} MIUI/V{10 + n % 5}.0.{n % 9}.0)"
    )


def click(click_id: str, i: int, now_ms: int) -> dict[str, Any]:
    return {
        "click_id": click_id,
        "clicked_at": now_ms - 3_600_000,
        "offer_id": f"o{i % 50}",
        "publisher_id": f"p{i % 300}",
        "campaign_id": f"c{i % 40}",
        "sub1": f"s{i % 1000}",
        "ip": "198.51.100.7",
        "user_agent": user_agent(i),
        "country_code": "US",
        "extra": {},
    }


def postback(click_id: str, n: int, now_ms: int) -> dict[str, Any]:
    """The n-th event after a click: n = 0 is the install, later ones purchases."""
    return {
        "request_id": uuid.uuid4().hex,
        "received_at": now_ms,
        "source": "default",
        "method": "GET",
        "click_id": click_id,
        "sender_ip": "203.0.113.1",
        "extra": {},
        "event_name": "purchase" if n else None,
        "transaction_id": f"{click_id}-{n}",
        "event_time": now_ms - 1_800_000,
        "install_time": now_ms - 1_800_000,
        "revenue": Decimal("4.99"),
        "currency": "EUR" if n % 2 else "USD",
        "payout": Decimal("1.2"),
        "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
        "country_code": "US",
    }


def clicks(n: int, prefix: str = "c") -> list[Record]:
    """n encoded clicks keyed by click id (`<prefix><i>`)."""
    codec, now = Codec(CLICK), int(time.time() * 1000)
    return [(f"{prefix}{i}".encode(), codec.encode(click(f"{prefix}{i}", i, now))) for i in range(n)]


def postbacks(n: int, n_clicks: int, prefix: str = "c", retry_every: int = 10) -> list[Record]:
    """n encoded postbacks spread over n_clicks clicks; every `retry_every`-th is a sender's retry."""
    codec, now = Codec(POSTBACK_RAW), int(time.time() * 1000)
    out: list[Record] = []
    i = 0
    while len(out) < n:
        c = i % n_clicks
        record = postback(f"{prefix}{c}", i // n_clicks, now)
        key, value = f"{prefix}{c}".encode(), codec.encode(record)
        out.append((key, value))
        if len(out) % retry_every == 0 and len(out) < n:
            out.append((key, codec.encode({**record, "request_id": uuid.uuid4().hex})))
        i += 1
    return out


CLICK_HEADERS = Codec(CLICK).headers
POSTBACK_HEADERS = Codec(POSTBACK_RAW).headers
