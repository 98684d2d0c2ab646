"""View-through attribution (stream/rules/view.py, stream/view_decide.py): the rules as the MMPs state
them, the route from the click path, and replays."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from postbacks.catalog import parse_catalog
from postbacks.devices import device_key
from postbacks.settings import Settings
from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_REJECTED, VIEW_POSTBACK, Codec
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, VIEW_KIND, Decider, Emit
from stream.rules import view
from stream.rules.attribution import Refused
from stream.view_decide import ViewDecider, ViewState
from tests.unit.stream.conftest import CLICK_AT, click, postback

GAID = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"
KEY = f"gaid:{GAID.lower()}"
HOUR = view.HOUR_MS
CODECS = {
    CONVERSION_KIND: Codec(CONVERSION, millis=True),
    REJECTED_KIND: Codec(POSTBACK_REJECTED, millis=True),
    DUPLICATE_KIND: Codec(POSTBACK_DUPLICATE, millis=True),
    VIEW_KIND: Codec(VIEW_POSTBACK, millis=True),
}
CATALOG = parse_catalog({"offers": {"o1": {}, "short": {"view_through_window_hours": 1}}})


def decoded(emit: Emit) -> dict[str, Any]:
    return CODECS[emit.kind].decode_version(emit.value, emit.schema_version)


@pytest.fixture
def decider() -> Decider:
    return Decider(Settings(), CATALOG, {}, {"USD": Decimal(1)})


@pytest.fixture
def views(decider: Decider) -> ViewDecider:
    return ViewDecider(decider)


def impression(impression_id: str = "i1", offer_id: str = "o1", at: int = CLICK_AT) -> dict[str, Any]:
    return {
        **{k: v for k, v in click(offer_id=offer_id, at=at).items() if k in view.STORED_FIELDS},
        "impression_id": impression_id,
        "viewed_at": at,
        "device_key": KEY,
        "gaid": GAID.lower(),
    }


def routed(decider: Decider, record: dict[str, Any], offset: int, key: str = KEY) -> dict[str, Any]:
    """The click path's route of a held postback whose click never came (Decider.on_tick)."""
    raw = decider.raw
    state = decider.hold(None, offset, int(record["received_at"]), raw.encode(record), raw.version)
    [emit] = decider.on_tick(state, int(record["received_at"]) + 3_600_000)
    assert emit.kind == VIEW_KIND and emit.key == key.encode()
    return decoded(emit)


def device_postback(after_s: float = 3600, **fields: Any) -> dict[str, Any]:
    """A postback quoting a click id nobody issued, from the device that saw the impressions."""
    return postback("unknown-click", after_s, gaid=GAID, event_name="purchase", install_time=None, **fields)


# -- the rule ---------------------------------------------------------------------------------


def window(offer_id: str) -> int:
    return (1 if offer_id == "short" else 24) * HOUR


def test_the_window_edge_counts_and_a_millisecond_more_does_not() -> None:
    seen = impression(at=CLICK_AT)
    edge = {**device_postback(), "event_time": CLICK_AT + 24 * HOUR}
    assert view.choose_impression([seen], edge, window) == seen
    late = {**edge, "event_time": CLICK_AT + 24 * HOUR + 1}
    refused = view.choose_impression([seen], late, window)
    assert isinstance(refused, Refused) and refused.reason == "unknown_click"


def test_each_offer_has_its_own_window() -> None:
    two_hours = {**device_postback(), "event_time": CLICK_AT + 2 * HOUR}
    assert isinstance(view.choose_impression([impression(offer_id="short")], two_hours, window), Refused)
    assert view.choose_impression([impression(offer_id="o1")], two_hours, window)["offer_id"] == "o1"


def test_an_impression_after_the_postback_or_of_another_named_offer_does_not_count() -> None:
    record = device_postback(after_s=60)
    after = impression(at=int(record["received_at"]) + 1)
    assert isinstance(view.choose_impression([after], record, window), Refused)
    named = {**record, "extra": {"offer_id": "short"}}
    assert isinstance(view.choose_impression([impression(offer_id="o1")], named, window), Refused)
    assert view.choose_impression([impression(offer_id="short")], named, window)["offer_id"] == "short"


def test_the_latest_impression_wins_and_ties_go_to_the_smaller_id() -> None:
    record = device_postback()
    older, newer = impression("i-old", at=CLICK_AT), impression("i-new", at=CLICK_AT + 1000)
    assert view.choose_impression([newer, older], record, window) == newer
    b, a = impression("b", at=CLICK_AT), impression("a", at=CLICK_AT)
    assert view.choose_impression([b, a], record, window) == a


def test_only_a_real_advertising_id_is_a_device_key() -> None:
    assert device_key({"gaid": GAID}) == KEY
    assert device_key({"idfa": GAID}) == f"idfa:{GAID.lower()}"
    assert device_key({"gaid": "00000000-0000-0000-0000-000000000000"}) is None  # no consent
    assert device_key({"gaid": "not-a-uuid", "idfa": None}) is None


# -- the route from the click path ------------------------------------------------------------


def test_a_held_postback_without_a_device_is_refused_as_before(decider: Decider) -> None:
    record = postback("unknown-click")
    state = decider.hold(None, 1, int(record["received_at"]), decider.raw.encode(record), decider.raw.version)
    [emit] = decider.on_tick(state, int(record["received_at"]) + 3_600_000)
    assert emit.kind == REJECTED_KIND and decoded(emit)["reason"] == "unknown_click"


def test_an_adjustment_is_never_routed(decider: Decider) -> None:
    record = device_postback(
        adjustment_id="a1", adjustment_conversion_id="c" * 32, adjustment_action="approve"
    )
    state = decider.hold(None, 1, int(record["received_at"]), decider.raw.encode(record), decider.raw.version)
    [emit] = decider.on_tick(state, int(record["received_at"]) + 3_600_000)
    assert emit.kind == REJECTED_KIND and decoded(emit)["reason"] == "unknown_conversion"


def test_a_click_inside_its_window_beats_an_impression(decider: Decider, views: ViewDecider) -> None:
    """The device saw an impression, but the postback's click is known: it converts on the click,
    and is never held, so never routed to view-through."""
    state, _ = decider.on_click(None, click("c1"))
    assert state is not None
    views.on_impression(None, impression(at=CLICK_AT - 1000))
    outcome = decider.on_postback(state, {**device_postback(), "click_id": "c1"}, offset=3)
    [emit] = outcome.emits
    conversion = decoded(emit)
    assert (conversion["attribution_type"], conversion["impression_id"]) == ("click", None)
    assert decider.due_at(state) is None  # nothing held: the clock routes nothing


# -- the view-through path --------------------------------------------------------------------


def test_an_impression_attributes_a_postback_whose_click_never_came(
    decider: Decider, views: ViewDecider
) -> None:
    state = views.on_impression(None, impression(at=CLICK_AT))
    assert state is not None
    record = device_postback(revenue=Decimal("4"), transaction_id="T1")
    state, [emit] = views.on_routed(state, routed(decider, record, offset=7))
    assert state is not None and emit.kind == CONVERSION_KIND and emit.key == b"unknown-click"
    conversion = decoded(emit)
    assert conversion["attribution_type"] == "view" and conversion["impression_id"] == "i1"
    assert conversion["click_time"] == CLICK_AT and conversion["version"] == 7
    assert (conversion["offer_id"], conversion["publisher_id"], conversion["revenue_usd"]) == (
        "o1",
        "p1",
        Decimal("4.000000"),
    )
    # Stored and read back, as the table does between batches.
    raw = views.dump(state)
    assert raw is not None
    again: ViewState = views.load(raw)
    # The click path replayed its tick: the route comes again, the same bytes go out, nothing changes.
    unchanged, [replayed] = views.on_routed(again, routed(decider, record, offset=7))
    assert unchanged is None and replayed == emit
    # Another postback for the same transaction is a duplicate; a new transaction a new conversion.
    _, [dup] = views.on_routed(again, routed(decider, {**record, "request_id": "r-dup"}, offset=8))
    assert dup.kind == DUPLICATE_KIND
    second = device_postback(transaction_id="T2")
    _, [upsell] = views.on_routed(again, routed(decider, second, offset=9))
    assert upsell.kind == CONVERSION_KIND and decoded(upsell)["attribution_type"] == "view"
    assert decoded(upsell)["conversion_id"] != conversion["conversion_id"]


def test_an_unknown_device_or_one_outside_its_window_is_refused_unknown_click(
    decider: Decider, views: ViewDecider
) -> None:
    record = device_postback()
    unchanged, [emit] = views.on_routed(None, routed(decider, record, offset=1))
    assert unchanged is None and emit.kind == REJECTED_KIND
    assert decoded(emit)["reason"] == "unknown_click" and "impression" in decoded(emit)["detail"]
    state = views.on_impression(None, impression(offer_id="short", at=CLICK_AT))
    unchanged, [emit] = views.on_routed(state, routed(decider, record, offset=2))  # 1 h window, 1 h + 0.5 s
    assert unchanged is None and decoded(emit)["reason"] == "unknown_click"


def test_an_impression_is_kept_once_and_old_ones_expire(views: ViewDecider) -> None:
    state = views.on_impression(None, impression("i1", at=CLICK_AT))
    assert state is not None and views.on_impression(state, impression("i1", at=CLICK_AT)) is None
    later = CLICK_AT + views.impression_ttl_ms() + 1
    state = views.on_impression(state, impression("i2", at=later))
    assert state is not None and [i["impression_id"] for i in state["impressions"]] == ["i2"]
    for n in range(view.MAX_IMPRESSIONS_PER_DEVICE + 5):  # a flood on one device keeps the latest
        views.on_impression(state, impression(f"f{n:03}", at=later + n))
    kept = [i["impression_id"] for i in state["impressions"]]
    assert (
        len(kept) == view.MAX_IMPRESSIONS_PER_DEVICE
        and kept[-1] == f"f{view.MAX_IMPRESSIONS_PER_DEVICE + 4:03}"
    )


@dataclass(frozen=True)
class Message:
    """A record of impressions.raw as the agent hands it over."""

    partition: int
    value: bytes
    headers: list[tuple[str, bytes]]


def _log(decider: Decider, views: ViewDecider) -> list[Message]:
    """Impressions of two devices, routes (one sent twice: a replayed tick), a poison record, and a
    route from a third device that saw nothing."""
    other = "idfa:0f0f0f0f-0000-4000-8000-000000000001"
    unseen = "0f0f0f0f-0000-4000-8000-000000000002"
    records: list[Message] = []
    for n, (key, at) in enumerate([(KEY, CLICK_AT), (other, CLICK_AT + 5), (KEY, CLICK_AT + 10)]):
        value = views.impressions.encode({**impression(f"i{n}", at=at), "device_key": key})
        records.append(Message(0, value, views.impressions.headers))
    for offset, fields in enumerate(
        [{"transaction_id": "T1"}, {"transaction_id": "T2"}, {"status": "rejected"}]
    ):
        route = routed(decider, device_postback(**fields), offset)
        records.append(Message(0, views.routed.encode(route), views.routed.headers))
    records.insert(4, records[3])  # the clock's tick replayed: the first route again
    records.insert(2, Message(0, b"\xff", views.impressions.headers))
    unknown = routed(decider, {**device_postback(), "gaid": None, "idfa": unseen}, 9, f"idfa:{unseen}")
    records.append(Message(0, views.routed.encode(unknown), views.routed.headers))
    return records


@pytest.mark.parametrize("cut", [1, 2, 3, 100])
def test_any_cut_into_batches_and_a_crash_before_the_state_is_written_give_the_same_outputs(
    decider: Decider, views: ViewDecider, cut: int
) -> None:
    log = _log(decider, views)
    whole = views.run(log, lambda key, partition: None)
    kinds = [e.kind for e in whole.emits]
    # T1, T1 again (the replayed route: the same bytes), T2, a third identity, the unseen device.
    assert kinds == [CONVERSION_KIND] * 4 + [REJECTED_KIND] and whole.emits[0] == whole.emits[1]
    assert len(whole.dead) == 1 and whole.counts == {"impressions": 3, "view_postbacks": 5}
    store: dict[bytes, bytes] = {}
    emits: list[Emit] = []
    for start in range(0, len(log), cut):
        batch = views.run(log[start : start + cut], lambda key, partition: store.get(key))
        emits += batch.emits
        if start == 0:  # a crash after the outputs, before the state: the batch is read again
            emits += views.run(log[:cut], lambda key, partition: store.get(key)).emits
        for key, written in batch.states.items():
            if written.value is None:
                store.pop(key, None)
            else:
                store[key] = written.value
    once = list(dict.fromkeys(emits))  # downstream identity: the same bytes are the same record
    assert once == list(dict.fromkeys(whole.emits))
