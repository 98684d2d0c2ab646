"""View-through decisions over one device's state: impressions kept, routed postbacks decided.

The agent (stream/view_through.py) reads `impressions.raw`, keyed by device key: the
impressions from ingest, and the postbacks the click path routed there when their click
never came (stream/decide.py `on_tick`, schema `view_postback`). Both in one log, so the
order argument of stream/decide.py "Order" holds here as for clicks and ticks: a postback
is routed only after its grace period plus `click_max_delay_s`, so every impression seen
before the postback was received is earlier in the partition than the routed record, and
is read first, in the first run and in every replay. The rule itself (stream/rules/view.py)
also only counts impressions seen no later than the postback was received.

Once attributed, the impression stands in for the click (rules/view.py `view_click`), and
the postback goes through the click path's own decision (`Decider.on_postback`): dedup,
status updates, fraud signals, payouts and replays are the same code. Its state is kept
per click id under the device (all postbacks of one click id come from one partition of
postbacks.raw, so their offsets order them, as in a click's state). A route sent twice
(the click path replayed its tick) is a replay there: the same bytes again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from schemas import IMPRESSION, VIEW_POSTBACK, VIEW_STATE, Codec, SchemaError, schema_name
from stream.batch import Written
from stream.decide import Decider, Emit
from stream.rules import view
from stream.rules.attribution import Refused
from stream.state import ClickState, Decision

Record = Mapping[str, Any]


class ViewAttributed(TypedDict):
    click: dict[str, Any]  # the impression as a click (rules/view.py view_click)
    expires_at: int
    decisions: list[Decision]


class ViewState(TypedDict):
    impressions: list[dict[str, Any]]
    attributed: list[ViewAttributed]


@dataclass
class ViewBatch:
    """What one batch decided: the outputs in order, each touched key's final state, the poison."""

    emits: list[Emit] = field(default_factory=list)
    states: dict[bytes, Written] = field(default_factory=dict)
    dead: list[tuple[Any, SchemaError]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"impressions": 0, "view_postbacks": 0})


class ViewDecider:
    def __init__(self, decider: Decider) -> None:
        self.d = decider
        self.impressions = Codec(IMPRESSION, millis=True)
        self.routed = Codec(VIEW_POSTBACK, millis=True)
        self._state = Codec(VIEW_STATE, millis=True)

    # -- configuration -------------------------------------------------------------------------

    def window_ms(self, offer_id: str) -> int:
        """The offer's view-through window (catalog `view_through_window_hours`), else the setting."""
        offer = self.d.catalog.offers.get(offer_id)
        hours = offer.view_window_hours if offer and offer.view_window_hours is not None else None
        return int((self.d.settings.view_window_hours if hours is None else hours) * view.HOUR_MS)

    def impression_ttl_ms(self) -> int:
        """How long an impression is kept: the longest window, plus how late a postback is routed.

        Older ones can attribute nothing (a routed postback was received at most the grace and
        the click delay before it is read), so this is the impression table's own TTL.
        """
        windows = [self.window_ms(o) for o in self.d.catalog.offers] + [self.window_ms("")]
        return max(windows) + self.d.grace_ms + self.d.click_delay_ms + view.HOUR_MS

    def state_ttl_ms(self) -> int:
        """The table's physical TTL: an attributed postback's conversion lives as long as a click."""
        return max(self.impression_ttl_ms(), self.d.max_ttl_ms())

    # -- decisions -----------------------------------------------------------------------------

    def on_impression(self, state: ViewState | None, impression: Record) -> ViewState | None:
        """The state with this impression kept; None when nothing changed (a re-sent impression)."""
        state = state or _empty()
        if not view.keep_impression(state["impressions"], impression, self.impression_ttl_ms()):
            return None
        _expire(state, int(impression["viewed_at"]))
        return state

    def on_routed(self, state: ViewState | None, routed: Record) -> tuple[ViewState | None, list[Emit]]:
        """Decide a postback routed here; the state to write (None: unchanged) and the outputs."""
        postback = self.d.raw.decode_version(routed["payload"], int(routed["schema_version"]))
        state = state or _empty()
        entry = next((a for a in state["attributed"] if a["click"]["click_id"] == postback["click_id"]), None)
        new = entry is None
        if entry is None:
            chosen = view.choose_impression(state["impressions"], postback, self.window_ms)
            if isinstance(chosen, Refused):
                return None, [self.d.unknown_click(postback, chosen)]
            click = view.view_click(chosen, str(postback["click_id"]))
            expires_at = int(click["clicked_at"]) + self.d.ttl_ms(str(click["offer_id"]))
            entry = {"click": click, "expires_at": expires_at, "decisions": []}
        click_state: ClickState = {
            "click": entry["click"],
            "expires_at": entry["expires_at"],
            "decisions": entry["decisions"],
            "pending": [],
        }
        outcome = self.d.on_postback(click_state, postback, int(routed["offset"]))
        if not outcome.state_changed:
            return None, outcome.emits
        if new:
            state["attributed"].append(entry)
        _expire(state, int(postback["received_at"]))
        return state, outcome.emits

    def run(self, messages: Sequence[Any], read: Callable[[bytes, int], bytes | None]) -> ViewBatch:
        """Decide records of impressions.raw in order (each has .headers, .value, .partition), over
        states read once by `read(key, partition)`; nothing is written: the caller applies the
        result. Like stream/batch.py, any cut into batches gives the same outputs."""
        batch = ViewBatch()
        cache: dict[bytes, tuple[int, ViewState | None]] = {}
        dirty: set[bytes] = set()
        for message in messages:
            try:
                schema = schema_name(message.headers)
                if schema == IMPRESSION:
                    record = self.impressions.decode(message.value, message.headers)
                elif schema == VIEW_POSTBACK:
                    record = self.routed.decode(message.value, message.headers)
                else:
                    raise SchemaError(f"unexpected schema header {schema!r}")
            except SchemaError as exc:
                batch.dead.append((message, exc))
                continue
            key = str(record["device_key"]).encode()
            if key not in cache:
                raw = read(key, message.partition)
                cache[key] = (message.partition, None if raw is None else self.load(raw))
            state = cache[key][1]
            if schema == IMPRESSION:
                batch.counts["impressions"] += 1
                updated = self.on_impression(state, record)
            else:
                batch.counts["view_postbacks"] += 1
                updated, emits = self.on_routed(state, record)
                batch.emits += emits
            if updated is not None:
                cache[key] = (message.partition, updated)
                dirty.add(key)
        for key in dirty:
            partition, written = cache[key]
            assert written is not None
            batch.states[key] = Written(partition, self.dump(written))
        return batch

    # -- table values --------------------------------------------------------------------------

    def dump(self, state: ViewState) -> bytes | None:
        """One byte of schema version, then the record (as stream/state.py); None: delete the key."""
        if not state["impressions"] and not state["attributed"]:
            return None
        return bytes((self._state.version,)) + self._state.encode(state)

    def load(self, raw: bytes) -> ViewState:
        return self._state.decode_version(raw[1:], raw[0])  # type: ignore[return-value]


def _empty() -> ViewState:
    return {"impressions": [], "attributed": []}


def _expire(state: ViewState, now: int) -> None:
    """Forget attributed postbacks whose click TTL ended before `now` (a record's time, not ours)."""
    state["attributed"] = [a for a in state["attributed"] if a["expires_at"] >= now]
