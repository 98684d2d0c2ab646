"""A state written from its parts is StateCodec's bytes, through any sequence of the decider's changes.

stream/state_bytes.py re-uses the bytes of a decision that is the same object with as many
emitted records, and of the head while the click is the same object: the changes generated
here are the ones stream/decide.py makes (a decision appended, a record appended to a
decision's `emitted`, the click replaced, the expiry moved, postbacks held and released).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.state import ClickState, Decision, EmittedRecord, StateCodec
from stream.state_bytes import StateWriter
from tests.unit.stream.conftest import CLICK_AT

CODEC, WRITER = StateCodec(), StateWriter()
texts = st.text(max_size=12)


def state_click(click_id: str, at: int) -> dict[str, Any]:
    return {
        "click_id": click_id, "clicked_at": at, "offer_id": "o1", "publisher_id": "p1",
        "campaign_id": None, "pub_click_id": None, "sub1": "s", "sub2": None, "sub3": None,
        "sub4": None, "sub5": None, "ip": "198.51.100.7", "user_agent": None, "country_code": "US",
    }  # fmt: skip


def emitted(offset: int, status: str) -> EmittedRecord:
    return {"offset": offset, "status": status, "value": status.encode() * 3, "schema_version": 2}


changes = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), texts, st.sampled_from(["conversion", "rejected"])),
        st.tuples(st.just("update"), st.integers(0, 20), texts),
        st.tuples(st.just("click"), texts, st.integers(0, 10**6)),
        st.tuples(st.just("expire"), st.integers(0, 10**9)),
        st.tuples(st.just("hold"), st.binary(max_size=20)),
        st.tuples(
            st.just("release"),
        ),
        st.tuples(
            st.just("write"),
        ),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(changes=changes, start_with_click=st.booleans())
def test_written_from_parts_is_the_codecs_bytes(
    changes: list[tuple[Any, ...]], start_with_click: bool
) -> None:
    state: ClickState = {
        "click": state_click("c1", CLICK_AT) if start_with_click else None,
        "expires_at": CLICK_AT + 1000,
        "decisions": [],
        "pending": [],
    }
    last = WRITER.parts_of_bare(state, CODEC.dump_state(state))  # as read from the table
    assert last is not None
    for offset, change in enumerate(changes, start=1):
        kind = change[0]
        if kind == "decide":
            new: Decision = {
                "dedup_key": change[1],
                "conversion_id": f"k{offset}",
                "outcome": change[2],
                "emitted": [emitted(offset, "approved")],
            }
            state["decisions"].append(new)
        elif kind == "update" and state["decisions"]:
            state["decisions"][change[1] % len(state["decisions"])]["emitted"].append(
                emitted(offset, change[2])
            )
        elif kind == "click":
            state["click"] = state_click(change[1], CLICK_AT + change[2])
        elif kind == "expire":
            state["expires_at"] = change[1]
        elif kind == "hold":
            state["pending"].append(
                {"offset": offset, "received_at": CLICK_AT, "schema_version": 2, "payload": change[1]}
            )
        elif kind == "release":
            state["pending"] = []
        else:
            raw, last = WRITER.dump(state, last)
            assert raw == CODEC.dump_state(state)
            assert CODEC.load_state(raw) == state
    raw, _ = WRITER.dump(state, last)
    assert raw == CODEC.dump_state(state)


def test_an_unchanged_decision_is_not_encoded_again() -> None:
    decisions: list[Decision] = [
        {
            "dedup_key": f"d{i}",
            "conversion_id": f"k{i}",
            "outcome": "conversion",
            "emitted": [emitted(i, "a")],
        }
        for i in range(3)
    ]
    state: ClickState = {
        "click": state_click("c1", CLICK_AT),
        "expires_at": 5,
        "decisions": decisions,
        "pending": [],
    }
    _, first = WRITER.dump(state, None)
    decisions[1]["emitted"].append(emitted(9, "b"))
    raw, second = WRITER.dump(state, first)
    assert raw == CODEC.dump_state(state)
    assert second.head is first.head
    assert second.encoded[0] is first.encoded[0]  # the same bytes object: not encoded
    assert second.encoded[2] is first.encoded[2]
    assert second.encoded[1] is not first.encoded[1]  # this one changed


def test_only_bytes_of_this_version_holding_no_decision_are_cut_into_parts() -> None:
    bare: ClickState = {"click": state_click("c1", CLICK_AT), "expires_at": 5, "decisions": [], "pending": []}
    raw = CODEC.dump_state(bare)
    assert WRITER.parts_of_bare(bare, raw) is not None
    assert WRITER.parts_of_bare(bare, bytes((raw[0] + 1,)) + raw[1:]) is None  # another version's head
    held: ClickState = {
        **bare,
        "pending": [{"offset": 1, "received_at": 2, "schema_version": 2, "payload": b"x"}],
    }
    assert WRITER.parts_of_bare(held, CODEC.dump_state(held)) is None
