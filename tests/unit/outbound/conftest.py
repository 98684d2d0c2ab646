"""A conversion version as the outbound worker decodes it (timestamps in unix ms)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

T0 = 1_763_900_000_000


def make_conversion(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "conversion_id": "conv-1",
        "version": 42,
        "status": "approved",
        "click_id": "c1",
        "event_name": "purchase",
        "received_at": T0,
        "conversion_time": T0 - 5_000,
        "offer_id": "o1",
        "publisher_id": "p1",
        "campaign_id": "cmp",
        "pub_click_id": "PUB-77",
        "sub1": "s1",
        "sub2": None,
        "sub3": None,
        "sub4": None,
        "sub5": None,
        "transaction_id": "T1",
        "goal": None,
        "payout": Decimal("1.500000"),
        "payout_currency": "EUR",
        "payout_usd": Decimal("1.620000"),
        "country_code": "DE",
    }
    record.update(overrides)
    return record


@pytest.fixture
def conversion() -> dict[str, Any]:
    return make_conversion()
