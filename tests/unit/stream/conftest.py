from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from ingest.aliases import CANONICAL_FIELDS
from postbacks.catalog import parse_catalog
from postbacks.settings import Settings
from stream.decide import Decider
from stream.registry import load_plugins
from stream.rules.fx import load_rates

load_plugins()

CLICK_AT = 1_763_000_000_000
_ids = itertools.count()


def click(click_id: str = "c1", offer_id: str = "o1", at: int = CLICK_AT, **extra: Any) -> dict[str, Any]:
    return {
        "click_id": click_id,
        "clicked_at": at,
        "offer_id": offer_id,
        "publisher_id": "p1",
        "campaign_id": "cmp1",
        "pub_click_id": "pub-9",
        "sub1": "s1",
        "sub2": None,
        "sub3": None,
        "sub4": None,
        "sub5": None,
        "ip": "198.51.100.1",
        "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Mobile Safari/537.36",
        "country_code": None,
        **extra,
    }


def postback(click_id: str = "c1", after_s: float = 3600, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "request_id": f"r{next(_ids)}",
        "received_at": CLICK_AT + int(after_s * 1000) + 500,
        "source": "default",
        "method": "GET",
        "click_id": click_id,
        "sender_ip": "203.0.113.1",
        "extra": {},
    }
    for name in CANONICAL_FIELDS - {"click_id"}:  # every parameter field, absent unless given
        record[name] = None
    # An install unless told otherwise: a postback without an event name is a plain conversion.
    record["event_name"] = "install"
    record["install_time"] = CLICK_AT + int(after_s * 1000)
    record.update(fields)
    return record


CATALOG = parse_catalog(
    {
        "offers": {
            "o1": {},
            "cpa": {"payout": {"type": "cpa", "amount": "2.00", "events": {"purchase": "0.50"}}},
            "share": {
                "payout": {"type": "revshare", "percent": 30},
                "ctit_min_s": 2,
                "attribution_window_install_days": 1,
            },
        }
    }
)


@pytest.fixture
def decider() -> Decider:
    rates = load_rates()
    rates["EUR"] = Decimal("1.10")
    return Decider(Settings(), CATALOG, {"keitaro": "per_transaction", "affise": "per_action"}, rates)
