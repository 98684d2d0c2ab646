"""Two topics, any interleaving, any crash: every postback gets the same one outcome.

The worker reads `clicks.raw` (clicks and its clock's ticks) and `postbacks.raw`;
Kafka keeps each partition's order but not the order between the two, and a replay
after a crash interleaves them differently than the first run did. This drives the
real Decider through the agent's own steps (stream/app.py: click, postback, tick) over
generated logs that obey what the system guarantees (a click lands in its log at
most `click_max_delay_s` after its clicked_at; a tick lands at its own time), and
checks that the deduplicated outputs never depend on the interleaving or on where
a crash fell: one outcome per postback, byte for byte the crash-free run's.

The crash model is Faust's at-least-once: offsets committed through step j, the
state (changelog) flushed through some step j' >= j, outputs of steps after j
delivered or not, except that the agent waits for the outputs of the rare paths
(a click or a tick that decides held postbacks) before it writes their state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postbacks.settings import Settings
from stream.decide import CONVERSION_KIND, Decider, Emit
from stream.state import ClickState
from tests.unit.stream.conftest import CATALOG, CLICK_AT, click, postback

GRACE_S, DELAY_S = 4.0, 1.0
CLICK_IDS = ("c1", "c2", "c3", "never")  # "never" has no click at all


@dataclass(frozen=True)
class Event:
    kind: str  # "click" | "tick" | "postback"
    offset: int
    record: dict[str, Any]


def decider() -> Decider:
    s = Settings(ctit_min_s=0, unknown_click_grace_s=GRACE_S, click_max_delay_s=DELAY_S)
    return Decider(s, CATALOG, {}, {})


ms = st.integers(0, 12_000).map(lambda t: t - t % 250)  # coarse: boundaries get hit
click_spec = st.tuples(ms, st.integers(0, int(DELAY_S * 1000)))  # clicked_at, landing delay
postback_spec = st.fixed_dictionaries(
    {
        "click": st.sampled_from(CLICK_IDS),
        "at": ms,
        "transaction_id": st.sampled_from([None, "T1"]),
        "status": st.sampled_from([None, "approved", "rejected"]),
    }
)


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """A clicks log (clicks and ticks by landing time) and a postbacks log (by receipt)."""
    landed: list[tuple[int, int, Event]] = []
    for cid in CLICK_IDS[:3]:
        if draw(st.booleans()):
            at, delay = draw(click_spec)
            landed.append((at + delay, 1, Event("click", 0, click(cid, at=CLICK_AT + at))))
    for at in draw(st.lists(ms, max_size=6)):
        landed.append((at, 0, Event("tick", 0, {"at": CLICK_AT + at})))
    clicks_log = [
        Event(e.kind, offset, e.record) for offset, (*_, e) in enumerate(sorted(landed, key=lambda t: t[:2]))
    ]
    specs = sorted(draw(st.lists(postback_spec, min_size=1, max_size=8)), key=lambda p: p["at"])
    postbacks_log = []
    for offset, spec in enumerate(specs, start=100):
        received = CLICK_AT + spec["at"]
        record = postback(
            spec["click"],
            received_at=received,
            install_time=CLICK_AT + 15_000,  # after every click: attributed unless late or unknown
            transaction_id=spec["transaction_id"],
            status=spec["status"],
        )
        postbacks_log.append(Event("postback", offset, record))
    return clicks_log, postbacks_log


# The clock keeps ticking while postbacks are held: a tick after everything else.
LAST_TICK = Event("tick", 10**6, {"at": CLICK_AT + 10**6})


def step(d: Decider, states: dict[str, ClickState], event: Event) -> tuple[list[Emit], bool]:
    """One event as the agent handles it: (outputs, whether the agent waits for them first)."""
    if event.kind == "click":
        cid = event.record["click_id"]
        updated, emits = d.on_click(states.get(cid), event.record)
        if updated is not None:
            states[cid] = updated
        return emits, bool(emits)
    if event.kind == "tick":
        emits = []
        for state in states.values():
            due = d.due_at(state)
            if due is not None and due <= event.record["at"]:
                emits += d.on_tick(state, event.record["at"])
        return emits, bool(emits)
    pb, cid = event.record, event.record["click_id"]
    state = states.get(cid)
    if state is None or state["click"] is None:
        states[cid] = d.hold(state, event.offset, pb["received_at"], d.raw.encode(pb), d.raw.version)
        return [], False
    return d.on_postback(state, pb, event.offset).emits, False


def merge(a: list[Event], b: list[Event], picks: list[bool]) -> list[Event]:
    """One interleaving of two logs that keeps each log's own order."""
    out, i, j = [], 0, 0
    for pick in picks + [True] * (len(a) + len(b)):
        if i < len(a) and (pick or j == len(b)):
            out.append(a[i])
            i += 1
        elif j < len(b):
            out.append(b[j])
            j += 1
    return out


def outcomes(d: Decider, emits: list[Emit]) -> dict[tuple[str, Any], bytes]:
    seen: dict[tuple[str, Any], bytes] = {}
    for emit in emits:
        record = d.codecs[emit.kind].decode_version(emit.value, emit.schema_version)
        key = (
            (emit.kind, (record["conversion_id"], record["version"]))
            if emit.kind == CONVERSION_KIND
            else (emit.kind, record["request_id"])
        )
        assert seen.setdefault(key, emit.value) == emit.value, f"{key} emitted with different content"
    return seen


def by_request(d: Decider, found: dict[tuple[str, Any], bytes]) -> dict[str, list[tuple[str, Any]]]:
    owners: dict[str, list[tuple[str, Any]]] = {}
    for (kind, identity), value in found.items():
        codec = d.codecs[kind]
        request_id = codec.decode_version(value, codec.version)["request_id"]
        owners.setdefault(request_id, []).append((kind, identity))
    return owners


picks = st.lists(st.booleans(), max_size=40)


@settings(max_examples=400, deadline=None)
@given(logs=logs(), first=picks, second=picks, data=st.data())
def test_outcomes_do_not_depend_on_interleaving_or_crashes(
    logs: tuple[list[Event], list[Event]], first: list[bool], second: list[bool], data: st.DataObject
) -> None:
    clicks_log, postbacks_log = logs
    d = decider()

    states: dict[str, ClickState] = {}
    reference = []
    for event in [*merge(clicks_log, postbacks_log, first), LAST_TICK]:
        reference += step(d, states, event)[0]
    expected = outcomes(d, reference)
    owners = by_request(d, expected)
    assert sorted(owners) == sorted(p.record["request_id"] for p in postbacks_log), "a postback was lost"
    assert all(len(found) == 1 for found in owners.values()), f"a postback counted twice: {owners}"

    # A second run in another interleaving, killed after step k and restarted.
    order = merge(clicks_log, postbacks_log, second)
    k = data.draw(st.integers(0, len(order)), label="crash after step")
    j = data.draw(st.integers(0, k), label="offsets committed through step")
    flushed = data.draw(st.integers(j, k), label="state flushed through step")
    states, snapshots, delivered = {}, [], []
    for index, event in enumerate(order[:k]):
        snapshots.append(copy.deepcopy(states))
        emits, waited = step(d, states, event)
        if index < j or (waited and index < flushed) or data.draw(st.booleans(), label="delivered"):
            delivered += emits
    snapshots.append(copy.deepcopy(states))
    states = snapshots[flushed]
    done = order[:j]
    rest = merge(
        [e for e in clicks_log if e not in done],
        [e for e in postbacks_log if e not in done],
        data.draw(picks, label="replay interleaving"),
    )
    for event in [*rest, LAST_TICK]:
        delivered += step(d, states, event)[0]
    assert outcomes(d, delivered) == expected


def every_interleaving(a: list[Event], b: list[Event]) -> list[list[Event]]:
    if not a or not b:
        return [a + b]
    return [[a[0], *rest] for rest in every_interleaving(a[1:], b)] + [
        [b[0], *rest] for rest in every_interleaving(a, b[1:])
    ]


def test_a_click_that_lands_late_but_within_its_delay_counts_in_every_order() -> None:
    """Stamped inside the grace period, landing after a tick that passed it: still attributed."""
    d = decider()
    grace_ms = int(GRACE_S * 1000)
    late = click("c1", at=CLICK_AT + grace_ms)  # the last moment of the grace period
    clicks_log = [Event("tick", 0, {"at": CLICK_AT + grace_ms + 250}), Event("click", 1, late)]
    postbacks_log = [
        Event("postback", 100, postback("c1", received_at=CLICK_AT, install_time=CLICK_AT + 15_000))
    ]
    runs = []
    for order in every_interleaving(clicks_log, postbacks_log):
        states: dict[str, ClickState] = {}
        runs.append(outcomes(d, [e for event in [*order, LAST_TICK] for e in step(d, states, event)[0]]))
    assert len(runs) == 3 and all(run == runs[0] for run in runs)
    assert [kind for kind, _ in runs[0]] == [CONVERSION_KIND]
