"""Advertiser adjustments in the stream: new versions of a conversion, once per adjustment id."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from postbacks.settings import Settings
from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_REJECTED, Codec
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, Decider, Emit
from stream.rules.fx import load_rates
from stream.state import ClickState, StateCodec
from tests.unit.stream.conftest import click, postback

CODECS = {
    CONVERSION_KIND: Codec(CONVERSION, millis=True),
    REJECTED_KIND: Codec(POSTBACK_REJECTED, millis=True),
    DUPLICATE_KIND: Codec(POSTBACK_DUPLICATE, millis=True),
}


def got(emit: Emit) -> dict[str, Any]:
    return CODECS[emit.kind].decode_version(emit.value, emit.schema_version)


def adjustment(adjustment_id: str, conversion_id: str, action: str, **fields: Any) -> dict[str, Any]:
    record = postback(source="admin", event_name=None)
    record.update(
        adjustment_id=adjustment_id,
        adjustment_conversion_id=conversion_id,
        adjustment_action=action,
        adjusted_by="alice",
        adjustment_reason="advertiser dispute #42",
        **fields,
    )
    return record


def converted() -> tuple[Decider, ClickState, dict[str, Any]]:
    rates = load_rates()
    rates["EUR"] = Decimal("1.10")
    decider = Decider(Settings(), rates=rates)
    state, _ = decider.on_click(None, click())
    assert state is not None
    [emit] = decider.on_postback(state, postback(payout=Decimal(2), status="approved"), 1).emits
    return decider, state, got(emit)


def test_reject_approve_and_payout_are_versions_with_their_audit() -> None:
    decider, state, first = converted()
    cid = first["conversion_id"]
    reject = got(decider.on_postback(state, adjustment("a1", cid, "reject"), 2).emits[0])
    assert (reject["conversion_id"], reject["version"], reject["status"]) == (cid, 2, "rejected")
    assert (reject["previous_status"], reject["previous_version"], reject["previous_payout_usd"]) == (
        "approved",
        1,
        Decimal("2.000000"),
    )
    assert reject["enrichment"] == {
        "adjustment_id": "a1",
        "adjusted_by": "alice",
        "adjustment_reason": "advertiser dispute #42",
    }
    # An adjustment may move a status back; a sender's update may not.
    approve = got(decider.on_postback(state, adjustment("a2", cid, "approve"), 3).emits[0])
    assert (approve["status"], approve["previous_status"]) == ("approved", "rejected")
    pay = adjustment("a3", cid, "payout", payout=Decimal("1.5"), currency="EUR")
    paid = got(decider.on_postback(state, pay, 4).emits[0])
    assert (paid["status"], paid["payout"], paid["payout_currency"], paid["payout_usd"]) == (
        "approved",
        Decimal("1.5"),
        "EUR",
        Decimal("1.650000"),
    )
    assert paid["previous_payout_usd"] == Decimal("2.000000") and paid["revenue_usd"] == first["revenue_usd"]
    # The sender's later chargeback builds on the adjusted version.
    back = got(decider.on_postback(state, postback(status="rejected"), 5).emits[0])
    assert (back["status"], back["previous_version"], back["payout_usd"]) == (
        "rejected",
        4,
        Decimal("1.650000"),
    )


def test_a_retried_adjustment_is_a_duplicate_and_a_replay_re_emits_the_same_bytes() -> None:
    decider, state, first = converted()
    cid = first["conversion_id"]
    [emit] = decider.on_postback(state, adjustment("a1", cid, "reject"), 2).emits
    retry = decider.on_postback(state, adjustment("a1", cid, "reject"), 3)
    assert not retry.state_changed and got(retry.emits[0])["reason"] == "same_key"
    # After a crash the state (as stored) is read back and offset 2 is read again.
    codec = StateCodec()
    stored = codec.load_state(codec.dump_state(state))
    replayed = decider.on_postback(stored, adjustment("a1", cid, "reject"), 2)
    assert replayed.emits == [emit] and not replayed.state_changed


def test_refused_adjustments_say_why() -> None:
    decider, state, first = converted()
    cid = first["conversion_id"]
    cases = [
        (adjustment("b1", "no-such-conversion", "approve"), "unknown_conversion"),
        (adjustment("b2", cid, "approve"), "adjustment_changes_nothing"),  # already approved
        (adjustment("b3", cid, "payout"), "bad_adjustment"),  # no amount
        (adjustment("b4", cid, "payout", payout=Decimal(1), currency="XAU"), "unknown_currency"),
        (adjustment("b5", cid, "approve", received_at=state["expires_at"] + 1), "conversion_expired"),
    ]
    for offset, (record, reason) in enumerate(cases, start=10):
        [emit] = decider.on_postback(state, record, offset).emits
        assert emit.kind == REJECTED_KIND and got(emit)["reason"] == reason, reason
        assert got(emit)["conversion_id"] == record["adjustment_conversion_id"]
    # Held for a click that never comes, an adjustment is refused as an unknown conversion.
    assert got(decider.unknown_click(adjustment("b6", cid, "approve", click_id="gone")))["reason"] == (
        "unknown_conversion"
    )
