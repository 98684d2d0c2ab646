"""Every preset's conversion identity under its DEFAULT settings, through the ingest's parsing and
the stream's decisions: several conversions on one click, status updates, retries, out-of-order
updates (docs/sending.md "Vendor macros", the identity table).

Each row is one postback as its vendor sends it (query string), normalised by the ingest's
real rules for a source with that preset and no other setting, then decided by the stream
with the policy `auto` resolves to for that preset. The expected outcome names a
conversion label: rows with one label must be one conversion (versions of it), rows
with different labels different conversions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ingest.aliases import CANONICAL_FIELDS, PRESETS
from ingest.parsing import normalise_postback, parse_query
from ingest.sources import parse_sources
from postbacks.settings import Settings
from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_REJECTED, Codec
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, Decider
from stream.rules.dedup import resolve_policy
from stream.rules.fx import load_rates
from tests.vendor_cases import CASES, C, D, R, fill

NOW_MS = 1_763_900_000_000
CLICK_AT = NOW_MS - 86_400_000
CODECS = {
    CONVERSION_KIND: Codec(CONVERSION, millis=True),
    REJECTED_KIND: Codec(POSTBACK_REJECTED, millis=True),
    DUPLICATE_KIND: Codec(POSTBACK_DUPLICATE, millis=True),
}
#: Sources as a new user writes them: a preset, nothing else (so `dedup_policy` is `auto`).
SOURCES = parse_sources({"sources": {name: {"auth": "none", "preset": name} for name in PRESETS}}, "test")


def raw(preset: str, query: str, received_after_s: int = 3600) -> dict[str, Any]:
    """The raw postback record the ingest publishes for `query` sent to source `preset`."""
    source = SOURCES.get(preset)
    assert source is not None
    record: dict[str, Any] = dict.fromkeys(CANONICAL_FIELDS)
    record.update(normalise_postback(parse_query(query, 200), source.rules, NOW_MS))
    record.update(
        request_id=f"{preset}-{abs(hash(query))}",
        received_at=CLICK_AT + received_after_s * 1000,
        source=preset,
        method="GET",
        sender_ip="203.0.113.1",
    )
    return record


def decider() -> Decider:
    policies = {name: resolve_policy(s.dedup_policy, name) for name, s in SOURCES.sources.items()}
    return Decider(Settings(), source_policies=policies, rates=load_rates())


def click(click_id: str) -> dict[str, Any]:
    return {
        "click_id": click_id, "clicked_at": CLICK_AT, "offer_id": "o1", "publisher_id": "p1",
        "campaign_id": None, "pub_click_id": None, "sub1": None, "sub2": None, "sub3": None,
        "sub4": None, "sub5": None, "ip": "198.51.100.1", "user_agent": None, "country_code": None,
    }  # fmt: skip


@pytest.mark.parametrize("preset", sorted(CASES))
def test_preset_identity_and_statuses(preset: str) -> None:
    assert set(CASES) == set(PRESETS), "every preset has its rows"
    d = decider()
    cid = f"{preset}-click"
    state, _ = d.on_click(None, click(cid))
    assert state is not None
    ids: dict[str, str] = {}
    amounts: dict[str, Decimal] = {}
    for offset, (query, kind, outcome, label) in enumerate(CASES[preset], start=1):
        record = raw(preset, fill(query, cid, CLICK_AT // 1000))
        emits = d.on_postback(state, record, offset).emits
        assert [e.kind for e in emits] == [kind], (query, emits)
        got = CODECS[kind].decode_version(emits[0].value, emits[0].schema_version)
        assert (got.get("status") if kind == C else got["reason"]) == outcome, query
        if kind == D:
            assert got["conversion_id"] == ids[label], f"{query}: a duplicate of {label}"
            continue
        assert ids.setdefault(label, got["conversion_id"]) == got["conversion_id"], f"{query}: same {label}"
        assert list(ids.values()).count(got["conversion_id"]) == 1, f"{query}: {label} is its own conversion"
        if got["previous_version"] is None:
            amounts[label] = got["revenue_usd"] + got["payout_usd"]
        else:  # an update keeps the amounts of the conversion it updates, never another's
            assert got["revenue_usd"] + got["payout_usd"] == amounts[label], query
    assert len(ids) == len({label for *_, label in CASES[preset]})


@pytest.mark.parametrize(
    ("preset", "query", "kind", "outcome"),
    [
        ("generic", "clickid={c}&payout=2", C, "approved"),  # a web lead 3 s after its click
        ("keitaro", "subid={c}&status=lead", C, "pending"),
        ("affise", "clickid={c}&goal=1&status=2", C, "pending"),
        ("everflow", "transaction_id={c}&amount=1", C, "approved"),
        ("generic", "clickid={c}&event=install", R, "ctit_too_short"),  # an install is click injection
        ("appsflyer", "clickid={c}", R, "ctit_too_short"),
    ],
)
def test_only_installs_get_the_click_injection_rule(preset: str, query: str, kind: str, outcome: str) -> None:
    d = decider()
    state, _ = d.on_click(None, click("fast"))
    assert state is not None
    [emit] = d.on_postback(state, raw(preset, query.format(c="fast"), received_after_s=3), 1).emits
    got = CODECS[emit.kind].decode_version(emit.value, emit.schema_version)
    assert (emit.kind, got.get("status") if kind == C else got["reason"]) == (kind, outcome)
    if kind == C:
        assert got["is_install"] is False and got["event_name"] != "install"
