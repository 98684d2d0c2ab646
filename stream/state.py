"""The stream's per-click state and its pending postbacks, as stored in Faust tables.

State values are the Avro records themselves (dicts), encoded with the schemas in
`schemas/avro` because the tables' changelogs are Kafka topics like any other.
"""

from __future__ import annotations

from typing import Any, TypedDict

from schemas import CLICK_STATE, PENDING_INDEX, Codec


class EmittedRecord(TypedDict):
    offset: int  # raw postback offset that produced it
    status: str  # the status (or refusal reason) it set
    value: bytes  # the record as emitted
    schema_version: int


class Decision(TypedDict):
    dedup_key: str
    conversion_id: str
    outcome: str  # "conversion" | "rejected"
    emitted: list[EmittedRecord]  # every version emitted, oldest first


class PendingPostback(TypedDict):
    offset: int
    received_at: int
    schema_version: int
    payload: bytes  # the raw postback as read from postbacks.raw


class ClickState(TypedDict):
    click: dict[str, Any] | None
    expires_at: int
    decisions: list[Decision]
    pending: list[PendingPostback]  # postbacks that came before the click


class PendingIndex(TypedDict):
    partition: int
    due_at: int


STATE_CLICK_FIELDS = (
    "click_id", "clicked_at", "offer_id", "publisher_id", "campaign_id", "pub_click_id",
    "sub1", "sub2", "sub3", "sub4", "sub5", "ip", "user_agent", "country_code",
)  # fmt: skip


def current_status(decision: Decision) -> str:
    """The conversion's status now, or the refusal reason: what its latest record set."""
    return decision["emitted"][-1]["status"]


def status_before(decision: Decision, offset: int) -> str:
    """The decision's status as it stood when `offset` was first read (replays see the same)."""
    status = decision["emitted"][0]["status"]
    for emitted in decision["emitted"]:
        if emitted["offset"] >= offset:
            break
        status = emitted["status"]
    return status


def find_decision(state: ClickState, dedup_key: str) -> Decision | None:
    for decision in state["decisions"]:
        if decision["dedup_key"] == dedup_key:
            return decision
    return None


class StateCodec:
    """Table values: one byte of schema version, then the Avro record.

    The version byte lets a new worker read state written by an older one during a
    rolling upgrade (schemas/ checks each version reads the previous one's data).
    """

    def __init__(self) -> None:
        self._state = Codec(CLICK_STATE, millis=True)
        self._index = Codec(PENDING_INDEX, millis=True)

    @staticmethod
    def _dump(codec: Codec, record: Any) -> bytes:
        return bytes((codec.version,)) + codec.encode(record)

    def dump_state(self, state: ClickState) -> bytes:
        return self._dump(self._state, state)

    def load_state(self, raw: bytes) -> ClickState:
        return self._state.decode_version(raw[1:], raw[0])  # type: ignore[return-value]

    def dump_index(self, entry: PendingIndex) -> bytes:
        return self._dump(self._index, entry)

    def load_index(self, raw: bytes) -> PendingIndex:
        return self._index.decode_version(raw[1:], raw[0])  # type: ignore[return-value]
