"""Crash and replay: re-reading postbacks after a crash changes nothing downstream.

Model of an at-least-once worker crash: the state (changelog) holds the effect of
events up to k, offsets were committed up to j <= k, and the outputs of events j..k
may or may not have reached Kafka. The worker restarts from j with the state at k.
After downstream deduplication (by (conversion_id, version) for conversions, by
request_id for refusals and duplicates) the outputs must equal a crash-free run's,
byte for byte: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postbacks.settings import Settings
from stream.decide import CONVERSION_KIND, Decider, Emit
from stream.rules.dedup import conversion_id
from stream.state import ClickState
from tests.unit.stream.conftest import CATALOG, CLICK_AT, click, postback

statuses = st.sampled_from([None, "pending", "hold", "approved", "rejected"])
event = st.fixed_dictionaries(
    {
        "click": st.sampled_from(["c1", "c2"]),
        "event_name": st.sampled_from([None, "install", "purchase"]),
        # An advertiser adjustment of the conversion with this transaction id instead of a postback.
        "adjust": st.sampled_from([None, None, None, ("a1", "reject"), ("a1", "reject"), ("a2", "approve")]),
        "transaction_id": st.sampled_from([None, "T1", "T2"]),
        "status": statuses,
        "revenue": st.sampled_from([None, Decimal("1.5"), Decimal(7)]),
        "after_s": st.sampled_from([2, 60, 3600, 9 * 86400]),
    }
)


def identity(emit: Emit, decider: Decider) -> tuple[str, Any]:
    record = decider.codecs[emit.kind].decode_version(emit.value, emit.schema_version)
    if emit.kind == CONVERSION_KIND:
        return emit.kind, (record["conversion_id"], record["version"])
    return emit.kind, record["request_id"]


def run(
    decider: Decider, states: dict[str, ClickState], events: list[tuple[int, dict[str, Any]]]
) -> list[Emit]:
    emits: list[Emit] = []
    for offset, pb in events:
        emits += decider.on_postback(states[pb["click_id"]], pb, offset).emits
    return emits


def dedup(emits: list[Emit], decider: Decider) -> dict[tuple[str, Any], bytes]:
    seen: dict[tuple[str, Any], bytes] = {}
    for emit in emits:
        key = identity(emit, decider)
        assert seen.setdefault(key, emit.value) == emit.value, f"{key} emitted with different content"
    return seen


@settings(max_examples=300, deadline=None)
@given(specs=st.lists(event, min_size=1, max_size=12), cut=st.data())
def test_replay_after_crash_is_invisible_downstream(specs: list[dict[str, Any]], cut: st.DataObject) -> None:
    decider = Decider(Settings(), CATALOG, {}, {"EUR": Decimal("1.1")})
    events = []
    for offset, spec in enumerate(specs, start=100):
        fields = {k: v for k, v in spec.items() if k not in {"click", "after_s", "adjust"}}
        if fields["event_name"]:
            fields["event_time"] = CLICK_AT + spec["after_s"] * 1000
        if spec["adjust"] is not None:  # the target's id is what the generic identity gives it
            target = conversion_id(spec["click"], f"txn|{spec['transaction_id'] or 'T1'}")
            fields.update(
                adjustment_id=spec["adjust"][0],
                adjustment_action=spec["adjust"][1],
                adjustment_conversion_id=target,
                adjusted_by="alice",
                adjustment_reason="review",
            )
        events.append((offset, postback(spec["click"], after_s=spec["after_s"], **fields)))

    def fresh() -> dict[str, ClickState]:
        return {cid: decider.on_click(None, click(cid))[0] for cid in ("c1", "c2")}  # type: ignore[misc]

    expected = dedup(run(decider, fresh(), events), decider)

    k = cut.draw(st.integers(0, len(events)), label="state flushed through")
    j = cut.draw(st.integers(0, k), label="offsets committed through")
    states = fresh()
    before_commit = run(decider, states, events[:j])
    uncommitted = run(decider, states, events[j:k])
    crashed_state = copy.deepcopy(states)
    replayed = run(decider, crashed_state, events[j:])

    # Outputs of j..k lost in the crash: nothing may be missing.
    assert dedup(before_commit + replayed, decider) == expected
    # Outputs of j..k flushed before the crash: nothing may be extra or different.
    assert dedup(before_commit + uncommitted + replayed, decider) == expected
