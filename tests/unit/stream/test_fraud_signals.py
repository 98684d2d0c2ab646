"""Fraud signals through the rule registry: each flags or refuses by the offer's choice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from postbacks.catalog import CatalogError, parse_catalog
from postbacks.settings import Settings
from schemas import CONVERSION, POSTBACK_REJECTED, Codec
from stream.decide import CONVERSION_KIND, REJECTED_KIND, Decider, Emit
from stream.rules.fx import load_rates
from tests.unit.stream.conftest import click, postback

CATALOG = parse_catalog(
    {
        "fraud": {"country_mismatch": "flag"},
        "offers": {
            "o1": {},
            "strict": {"fraud": {"country_mismatch": "refuse", "ctit_long": "refuse"}},
            "lax": {"fraud": {"country_mismatch": "off", "ctit_long": "off"}},
        },
    }
)
DAY_S = 86_400


def decide(offer: str, *postbacks: dict[str, Any], country: str | None = "DE") -> list[Emit]:
    decider = Decider(Settings(), CATALOG, rates=load_rates())
    state, _ = decider.on_click(None, click("c1", offer_id=offer, country_code=country))
    assert state is not None
    return [decider.on_postback(state, p, offset=i).emits[0] for i, p in enumerate(postbacks, start=1)]


def decoded(emit: Emit) -> dict[str, Any]:
    codec = Codec(CONVERSION if emit.kind == CONVERSION_KIND else POSTBACK_REJECTED, millis=True)
    return codec.decode_version(emit.value, emit.schema_version)


def test_country_mismatch_is_flagged_and_the_flag_survives_status_updates() -> None:
    first, update = decide(
        "o1",
        postback(country_code="FR", status="pending", payout=Decimal(2)),
        postback(status="approved"),
    )
    assert [first.kind, update.kind] == [CONVERSION_KIND, CONVERSION_KIND]
    assert decoded(first)["enrichment"]["fraud_flags"] == "country_mismatch"
    assert decoded(update)["enrichment"]["fraud_flags"] == "country_mismatch"
    assert decoded(update)["status"] == "approved"


@pytest.mark.parametrize(
    ("offer", "fields", "country", "kind", "flags_or_reason"),
    [
        ("o1", {"country_code": "DE"}, "DE", CONVERSION_KIND, None),  # same country
        ("o1", {"country_code": "FR"}, None, CONVERSION_KIND, None),  # the click's country unknown
        ("strict", {"country_code": "FR"}, "DE", REJECTED_KIND, "country_mismatch"),
        ("lax", {"country_code": "FR"}, "DE", CONVERSION_KIND, None),
        ("o1", {"after_s": 2 * DAY_S}, "DE", CONVERSION_KIND, "ctit_long"),  # flagged by default
        ("strict", {"after_s": 2 * DAY_S}, "DE", REJECTED_KIND, "ctit_long"),
        ("lax", {"after_s": 2 * DAY_S}, "DE", CONVERSION_KIND, None),
        (
            "o1",
            {"after_s": 2 * DAY_S, "country_code": "FR"},
            "DE",
            CONVERSION_KIND,
            "ctit_long,country_mismatch",
        ),
        ("o1", {"after_s": 2 * DAY_S, "event_name": "lead"}, "DE", CONVERSION_KIND, None),  # not an install
    ],
)
def test_signal_actions_per_offer(
    offer: str, fields: dict[str, Any], country: str | None, kind: str, flags_or_reason: str | None
) -> None:
    [emit] = decide(offer, postback(**fields), country=country)
    got = decoded(emit)
    assert emit.kind == kind
    if kind == REJECTED_KIND:
        assert got["reason"] == flags_or_reason and got["stage"] == "stream"
    else:
        assert got["enrichment"].get("fraud_flags") == flags_or_reason


def test_fraud_actions_are_checked_when_the_catalog_loads() -> None:
    with pytest.raises(CatalogError, match="fraud"):
        parse_catalog({"offers": {"o1": {"fraud": {"country_mismatch": "block"}}}})
    with pytest.raises(CatalogError, match="fraud"):
        parse_catalog({"fraud": {"ctit_long": 1}})
