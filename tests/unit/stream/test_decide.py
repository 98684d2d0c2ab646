"""The stream's decisions on real-looking records: attribute, refuse, deduplicate, update, replay."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_REJECTED, Codec
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, Decider, Emit
from stream.registry import Registry
from stream.rules.attribution import Refused
from stream.state import ClickState
from tests.unit.stream.conftest import CLICK_AT, click, postback

CODECS = {
    CONVERSION_KIND: Codec(CONVERSION, millis=True),
    REJECTED_KIND: Codec(POSTBACK_REJECTED, millis=True),
    DUPLICATE_KIND: Codec(POSTBACK_DUPLICATE, millis=True),
}


def decoded(emit: Emit) -> dict[str, Any]:
    return CODECS[emit.kind].decode_version(emit.value, emit.schema_version)


def known(decider: Decider, **fields: Any) -> ClickState:
    state, emits = decider.on_click(None, click(**fields))
    assert state is not None and emits == []
    return state


def test_install_with_eur_revenue_becomes_a_usd_conversion(decider: Decider) -> None:
    state = known(decider)
    outcome = decider.on_postback(
        state,
        postback(
            revenue=Decimal("10"), currency="EUR", payout=Decimal("2"), country_code="DE", transaction_id="T1"
        ),
        offset=5,
    )
    assert outcome.state_changed
    [emit] = outcome.emits
    assert emit.kind == CONVERSION_KIND and emit.key == b"c1"
    conv = decoded(emit)
    assert (conv["status"], conv["version"], conv["event_name"], conv["is_install"]) == (
        "approved",
        5,
        "install",
        True,
    )
    assert conv["revenue"] == Decimal("10") and conv["revenue_currency"] == "EUR"
    assert conv["revenue_usd"] == Decimal("11.000000") and conv["fx_rate"] == Decimal("1.10")
    assert conv["payout"] == Decimal("2") and conv["payout_usd"] == Decimal("2.200000")
    assert (conv["offer_id"], conv["publisher_id"], conv["campaign_id"], conv["sub1"]) == (
        "o1",
        "p1",
        "cmp1",
        "s1",
    )
    assert conv["click_to_conversion_s"] == 3600 and conv["ctit_long"] is False
    assert (conv["country_code"], conv["click_ip"], conv["pub_click_id"]) == ("DE", "198.51.100.1", "pub-9")
    assert (conv["os_family"], conv["device_family"]) == ("Android", "Pixel 8")


def test_retried_postback_is_a_counted_duplicate(decider: Decider) -> None:
    state = known(decider)
    first = decider.on_postback(state, postback(), offset=1)
    retry = decider.on_postback(state, postback(), offset=2)
    assert [e.kind for e in first.emits + retry.emits] == [CONVERSION_KIND, DUPLICATE_KIND]
    dup = decoded(retry.emits[0])
    assert dup["reason"] == "same_key" and dup["conversion_id"] == decoded(first.emits[0])["conversion_id"]
    assert not retry.state_changed


def test_status_updates_make_versions_not_new_conversions(decider: Decider) -> None:
    state = known(decider)
    pending = decider.on_postback(state, postback(status="pending", revenue=Decimal(5)), offset=10).emits[0]
    approved = decider.on_postback(state, postback(status="approved"), offset=11).emits[0]
    back = decider.on_postback(state, postback(status="pending"), offset=12).emits[0]
    reversed_ = decider.on_postback(state, postback(status="rejected"), offset=13).emits[0]
    a, b, d = decoded(pending), decoded(approved), decoded(reversed_)
    assert a["conversion_id"] == b["conversion_id"] == d["conversion_id"]
    assert (a["version"], b["version"], d["version"]) == (10, 11, 13)
    assert (b["previous_status"], b["previous_version"], b["revenue"]) == ("pending", 10, Decimal(5))
    assert (b["previous_revenue_usd"], b["previous_payout_usd"]) == (a["revenue_usd"], a["payout_usd"])
    assert back.kind == DUPLICATE_KIND and decoded(back)["reason"] == "status_not_advanced"
    assert d["status"] == "rejected"
    assert [e["offset"] for e in state["decisions"][0]["emitted"]] == [10, 11, 13]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"after_s": 3}, "ctit_too_short"),
        ({"after_s": 8 * 86400}, "outside_window"),
        ({"blocked_reason": "click_flood", "blocked_sub_reason": "ctit_anomaly"}, "blocked_by_sender"),
        ({"revenue": Decimal(1), "currency": "XAU"}, "unknown_currency"),
    ],
)
def test_refusals_are_kept_with_their_reason(decider: Decider, fields: dict[str, Any], reason: str) -> None:
    state = known(decider)
    [emit] = decider.on_postback(state, postback(**fields), offset=3).emits
    rejected = decoded(emit)
    assert emit.kind == REJECTED_KIND and rejected["reason"] == reason and rejected["stage"] == "stream"
    assert rejected["offer_id"] == "o1" and rejected["conversion_id"]
    # A retry of a refused postback is a duplicate, not a second refusal.
    assert decider.on_postback(state, postback(**fields), offset=4).emits[0].kind == DUPLICATE_KIND


def test_in_app_events_use_their_own_window_and_keys(decider: Decider) -> None:
    state = known(decider)
    day = 86_400_000
    buy1 = postback(
        event_name="purchase", event_time=CLICK_AT + 20 * day, transaction_id="A", revenue=Decimal(3)
    )
    buy2 = postback(
        event_name="purchase", event_time=CLICK_AT + 21 * day, transaction_id="B", revenue=Decimal(4)
    )
    late = postback(event_name="purchase", event_time=CLICK_AT + 31 * day, transaction_id="C")
    kinds = [decider.on_postback(state, p, offset=i).emits[0].kind for i, p in enumerate([buy1, buy2, late])]
    assert kinds == [CONVERSION_KIND, CONVERSION_KIND, REJECTED_KIND]


def test_offer_payout_rules(decider: Decider) -> None:
    cpa = known(decider, click_id="k1", offer_id="cpa")
    install = decoded(decider.on_postback(cpa, postback("k1", payout=Decimal(9)), offset=1).emits[0])
    buy = decoded(
        decider.on_postback(
            cpa,
            postback("k1", event_name="purchase", transaction_id="t", event_time=CLICK_AT + 7200_000),
            offset=2,
        ).emits[0]
    )
    assert (install["payout_usd"], buy["payout_usd"]) == (Decimal("2.000000"), Decimal("0.500000"))
    share = known(decider, click_id="k2", offer_id="share")
    conv = decoded(
        decider.on_postback(share, postback("k2", after_s=5, revenue=Decimal(10)), offset=3).emits[0]
    )
    assert conv["payout_usd"] == Decimal("3.000000")  # 30% of 10 USD; ctit_min 2s for this offer


def test_dedup_policy_per_source(decider: Decider) -> None:
    state = known(decider)
    rebill1 = postback(
        source="keitaro", transaction_id="T1", event_name="sale", event_time=CLICK_AT + 7200_000
    )
    rebill2 = postback(
        source="keitaro", transaction_id="T2", event_name="sale", event_time=CLICK_AT + 7200_000
    )
    affise1 = postback(
        source="affise", action_id="A1", goal="2", event_name="lead", event_time=CLICK_AT + 7300_000
    )
    affise2 = postback(
        source="affise", action_id="A1", goal="2", event_name="lead", event_time=CLICK_AT + 7400_000
    )
    kinds = [
        decider.on_postback(state, p, offset=i).emits[0].kind
        for i, p in enumerate([rebill1, rebill2, affise1, affise2])
    ]
    assert kinds == [CONVERSION_KIND, CONVERSION_KIND, CONVERSION_KIND, DUPLICATE_KIND]


def test_expired_click_and_unknown_click(decider: Decider) -> None:
    state = known(decider)
    [emit] = decider.on_postback(state, postback(after_s=31 * 86400), offset=1).emits
    assert decoded(emit)["reason"] == "click_expired"
    unknown = decoded(decider.unknown_click(postback("nope")))
    assert unknown["reason"] == "unknown_click" and unknown["offer_id"] is None


def test_click_is_stored_once() -> None:
    from postbacks.settings import Settings

    decider = Decider(Settings())
    state, _ = decider.on_click(None, click())
    assert state is not None and decider.on_click(state, click()) == (None, [])
    assert state["expires_at"] == CLICK_AT + 30 * 86_400_000


def test_registered_custom_rules_run_in_the_pipeline() -> None:
    from postbacks.settings import Settings
    from stream.registry import registry as default

    custom = Registry(dict(default.dedup_policies), dict(default.fraud_rules), dict(default.enrichers))

    @custom.fraud_rule("datacenter_ip")
    def datacenter(pb: Any, clk: Any, ctx: Any) -> Refused | None:
        return Refused("datacenter_ip", "hosting range") if clk["ip"].startswith("203.0.113.") else None

    @custom.enrichment("publisher_tier")
    def tier(conversion: Any, pb: Any, clk: Any, ctx: Any) -> None:
        conversion["enrichment"]["publisher_tier"] = "gold" if clk["publisher_id"] == "p1" else "std"

    decider = Decider(Settings(), plugins=custom)
    fraud, _ = decider.on_click(None, click("f1", ip="203.0.113.7"))
    good, _ = decider.on_click(None, click("g1"))
    assert fraud is not None and good is not None
    assert decoded(decider.on_postback(fraud, postback("f1"), offset=1).emits[0])["reason"] == "datacenter_ip"
    assert decoded(decider.on_postback(good, postback("g1"), offset=2).emits[0])["enrichment"] == {
        "publisher_tier": "gold"
    }
    with pytest.raises(ValueError, match="already registered"):
        custom.fraud_rule("datacenter_ip")(lambda *a: None)
