"""What happens to each click and postback: the stream's decisions, as pure functions.

Every raw postback ends as exactly one of: a conversion version (attributed), a
rejection with a reason, or a counted duplicate. The Faust agent (stream/app.py)
only moves bytes between Kafka and these functions.

Replays. The worker runs at-least-once: after a crash, postbacks since the last
committed offset are read again, and the state may already hold what they did.
Each decision therefore keeps every record it emitted with the raw offset that
produced it. A replayed offset that produced one re-emits it byte for byte; one
that did not is classified again, and because statuses only move forward
(rules/status.py) it is classified the same way
(tests/unit/stream/test_replay.py). Outputs are keyed so downstream deduplication by
(conversion_id, version) and request_id makes the replay invisible.

Order. A replay also reads clicks and postbacks in another interleaving than the
first run did (they are two topics). So no decision may depend on which of the two
was read first: whether a postback's click counts is decided by data alone, the
click's `clicked_at` against the postback's `received_at` plus the grace period, and
the clock that refuses a postback whose click never came is a mark in the clicks log
itself (`on_tick`), so a click appended before the mark is always read before it
(tests/unit/stream/test_interleaving.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from postbacks.catalog import EMPTY_CATALOG, Catalog, Offer, PayoutRule
from postbacks.settings import Settings
from schemas import CONVERSION, POSTBACK_DUPLICATE, POSTBACK_RAW, POSTBACK_REJECTED, VIEW_POSTBACK, Codec
from stream.registry import Registry, RuleContext, registry
from stream.rules import adjustment, view
from stream.rules.attribution import DAY_MS, Attributed, AttributionRules, Refused, attribute
from stream.rules.dedup import conversion_id, event_name, is_install
from stream.rules.fraud import DEFAULT_ACTIONS, FLAGS_KEY
from stream.rules.fx import QUANTUM, to_usd
from stream.rules.payout import payout_for
from stream.rules.status import advances, status_of
from stream.state import (
    STATE_CLICK_FIELDS,
    ClickState,
    Decision,
    EmittedRecord,
    PendingPostback,
    current_status,
    find_decision,
    status_before,
)

Record = Mapping[str, Any]
ZERO = Decimal(0).quantize(QUANTUM)

CONVERSION_KIND = "conversion"
REJECTED_KIND = "rejected"
DUPLICATE_KIND = "duplicate"
#: The outcome of an adjustment's own decision (its record is a conversion version).
ADJUSTMENT_KIND = "adjustment"
#: A postback whose click never came, routed to view-through under its device key (stream/view_through.py).
VIEW_KIND = "view_postback"


class Emit(NamedTuple):
    """One output record, encoded, with the schema version its bytes were written with.

    Named tuples, not frozen dataclasses, for the records made per postback: a frozen
    dataclass sets each field through object.__setattr__, a tuple is built in C.
    """

    kind: str
    key: bytes
    value: bytes
    schema_version: int


class Outcome(NamedTuple):
    state_changed: bool
    emits: list[Emit]


class Decider:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog = EMPTY_CATALOG,
        source_policies: Mapping[str, str] | None = None,
        rates: Mapping[str, Decimal] | None = None,
        plugins: Registry = registry,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.source_policies = dict(source_policies or {})
        self.rates: Mapping[str, Decimal] = rates if rates is not None else {}
        self.registry = plugins
        self.codecs = {
            CONVERSION_KIND: Codec(CONVERSION, millis=True),
            REJECTED_KIND: Codec(POSTBACK_REJECTED, millis=True),
            DUPLICATE_KIND: Codec(POSTBACK_DUPLICATE, millis=True),
            VIEW_KIND: Codec(VIEW_POSTBACK, millis=True),
        }
        self.raw = Codec(POSTBACK_RAW, millis=True)
        self.grace_ms = int(settings.unknown_click_grace_s * 1000)
        self.click_delay_ms = int(settings.click_max_delay_s * 1000)
        self._rules: dict[str | None, AttributionRules] = {}
        for policy in self.source_policies.values():
            self.registry.policy(policy)  # unknown policy names fail at start, not per event

    # -- configuration per offer -------------------------------------------------------------

    def rules_for(self, offer_id: str) -> AttributionRules:
        offer = self.catalog.offers.get(offer_id)
        cache_key = offer_id if offer is not None else None
        rules = self._rules.get(cache_key)
        if rules is None:
            s = self.settings
            rules = AttributionRules(
                window_install_ms=int(
                    _override(offer, "window_install_days", s.window_install_days) * DAY_MS
                ),
                window_event_ms=int(_override(offer, "window_event_days", s.window_event_days) * DAY_MS),
                ctit_min_ms=int(_override(offer, "ctit_min_s", s.ctit_min_s) * 1000),
                ctit_long_ms=int(_override(offer, "ctit_long_s", s.ctit_long_s) * 1000),
            )
            self._rules[cache_key] = rules
        return rules

    def ttl_ms(self, offer_id: str) -> int:
        offer = self.catalog.offers.get(offer_id)
        days = (
            offer.click_ttl_days
            if offer and offer.click_ttl_days is not None
            else self.settings.click_ttl_days
        )
        return int(days * DAY_MS)

    def max_ttl_ms(self) -> int:
        return max(
            [self.ttl_ms(o) for o in self.catalog.offers] + [int(self.settings.click_ttl_days * DAY_MS)]
        )

    # -- clicks ------------------------------------------------------------------------------

    def on_click(self, state: ClickState | None, click: Record) -> tuple[ClickState | None, list[Emit]]:
        """The state to store for a click and the decisions on postbacks held for it.

        None when the click is already known (a replay or a re-send): nothing changes.
        """
        if state is not None and state["click"] is not None:
            return None, []
        updated: ClickState = {
            "click": {name: click.get(name) for name in STATE_CLICK_FIELDS},
            "expires_at": int(click["clicked_at"]) + self.ttl_ms(click["offer_id"]),
            "decisions": state["decisions"] if state is not None else [],
            "pending": [],
        }
        return updated, self._decide_held(updated, state["pending"] if state is not None else [])

    # -- postbacks waiting for their click --------------------------------------------------

    def hold(
        self, state: ClickState | None, offset: int, received_at: int, payload: bytes, schema_version: int
    ) -> ClickState:
        """Keep a postback whose click has not been read; idempotent by offset, for replays."""
        state = state or {"click": None, "expires_at": 0, "decisions": [], "pending": []}
        if all(p["offset"] != offset for p in state["pending"]):
            state["pending"].append(
                {
                    "offset": offset,
                    "received_at": received_at,
                    "schema_version": schema_version,
                    "payload": payload,
                }
            )
        return state

    def held_postback(self, held: PendingPostback) -> dict[str, Any]:
        return self.raw.decode_version(held["payload"], held["schema_version"])

    def _decide_held(self, state: ClickState, held: list[PendingPostback]) -> list[Emit]:
        """Held postbacks now that their click is known, in the order they were received."""
        emits: list[Emit] = []
        for pending in sorted(held, key=lambda p: p["offset"]):
            emits += self.on_postback(state, self.held_postback(pending), pending["offset"]).emits
        return emits

    def refusable_at(self, held: PendingPostback) -> int:
        """After this, the clicks log has certainly passed the postback's grace period (see on_tick)."""
        return held["received_at"] + self.grace_ms + self.click_delay_ms

    def due_at(self, state: ClickState) -> int | None:
        """When the earliest held postback becomes refusable (a tick after it); None when none is held."""
        return min((self.refusable_at(p) for p in state["pending"]), default=None)

    def on_tick(self, state: ClickState, at: int) -> list[Emit]:
        """A clock mark read from the clicks log at time `at`: refuse held postbacks that are due.

        The mark sits in the clicks partition behind every click appended before it, so
        a click not read by now is appended after `at`. A click lands at most
        `click_max_delay_s` after its `clicked_at`, so that click's `clicked_at` is after
        the postback's grace: it is late by the data too (on_postback), and a replay that
        reads it before the postback decides the same refusal. Mutates `state["pending"]`.

        Only a state without its click holds postbacks: `hold` is called only then, and
        `on_click` decides and clears what was held.
        """
        assert state["click"] is None or not state["pending"], "a known click holds no postbacks"
        due = [p for p in state["pending"] if self.refusable_at(p) < at]
        state["pending"] = [p for p in state["pending"] if p not in due]
        return [self._unknown_or_view(p) for p in sorted(due, key=lambda p: p["offset"])]

    def _unknown_or_view(self, held: PendingPostback) -> Emit:
        """Refused `unknown_click`, or, carrying a device key, routed to view-through (rules/view.py)."""
        postback = self.held_postback(held)
        key = view.route_key(postback)
        if key is None:
            return self.unknown_click(postback)
        routed = {
            "device_key": key,
            **{k: held[k] for k in ("offset", "received_at", "schema_version", "payload")},
        }
        codec = self.codecs[VIEW_KIND]
        return Emit(VIEW_KIND, key.encode(), codec.encode(routed), codec.version)

    # -- postbacks ---------------------------------------------------------------------------

    def on_postback(self, state: ClickState, postback: Record, offset: int) -> Outcome:
        """Decide a postback whose click is known. Mutates `state` when `state_changed`."""
        click = state["click"]
        assert click is not None, "postbacks without a click wait in the pending table"
        if adjustment.is_adjustment(postback):
            return self._adjust(state, click, postback, offset)
        if int(click["clicked_at"]) > int(postback["received_at"]) + self.grace_ms:
            # The click came after the grace period: by the data, whichever was read first.
            return Outcome(False, [self.unknown_click(postback)])
        if state["expires_at"] < int(postback["received_at"]):
            refusal = Refused("click_expired", "the click is older than its offer's click TTL")
            return Outcome(False, [self._rejection(postback, click, refusal, None)])
        policy = self.registry.policy(self.source_policies.get(postback["source"], "auto"))
        key = policy(postback, click)
        decision = find_decision(state, key)
        if decision is not None and offset <= decision["emitted"][-1]["offset"]:
            replayed = self._replay(decision, offset, click)
            if replayed is not None:
                return Outcome(False, [replayed])
        if decision is None:
            decision, emit = self._decide_new(postback, click, key, offset)
            state["decisions"].append(decision)
            return Outcome(True, [emit])
        new_status = status_of(postback.get("status"))
        if (
            decision["outcome"] == CONVERSION_KIND
            and offset > decision["emitted"][-1]["offset"]
            and advances(current_status(decision), new_status)
        ):
            return self._update(decision, postback, click, offset, new_status)
        return Outcome(False, [self._duplicate(postback, click, decision, offset)])

    def unknown_click(self, postback: Record, refusal: Refused | None = None) -> Emit:
        """A postback whose click did not arrive within the grace period (`refusal`: view-through's)."""
        if adjustment.is_adjustment(postback):
            target = postback.get("adjustment_conversion_id")
            refusal = Refused(
                "unknown_conversion", f"no conversion {target!r} on click {postback['click_id']!r}"
            )
            return self._rejection(postback, None, refusal, target)
        refusal = refusal or Refused(
            "unknown_click", f"no click {postback['click_id']!r} within the grace period"
        )
        return self._rejection(postback, None, refusal, None)

    def _adjust(self, state: ClickState, click: Record, postback: Record, offset: int) -> Outcome:
        """An admin's adjustment: a new version of its conversion, once per adjustment id.

        Its decision (key `adjustment|<id>`) keeps what it emitted, so a replay re-emits it
        and a retry with the same id is a duplicate; the version is also appended to the
        conversion's own decision, so later updates build on it (stream/rules/adjustment.py).
        """
        key = adjustment.key(postback)
        target_id = postback.get("adjustment_conversion_id")
        existing = find_decision(state, key)
        if existing is not None:
            if offset <= existing["emitted"][-1]["offset"]:
                replayed = self._replay(existing, offset, click)
                if replayed is not None:
                    return Outcome(False, [replayed])
            return Outcome(False, [self._duplicate(postback, click, existing, offset)])
        target = next(
            (
                d
                for d in state["decisions"]
                if d["conversion_id"] == target_id and d["outcome"] == CONVERSION_KIND
            ),
            None,
        )
        result: dict[str, Any] | Refused
        if target is None:
            result = Refused(
                "unknown_conversion", f"no conversion {target_id!r} on click {click['click_id']!r}"
            )
        elif state["expires_at"] < int(postback["received_at"]):
            result = Refused("conversion_expired", "the conversion is older than its offer's click TTL")
        else:
            latest = target["emitted"][-1]
            previous = self.codecs[CONVERSION_KIND].decode_version(latest["value"], latest["schema_version"])
            result = adjustment.adjusted(previous, postback, offset, self.rates)
        if isinstance(result, Refused):
            emit = self._rejection(postback, click, result, target_id)
            outcome, status = REJECTED_KIND, result.reason
        else:
            assert target is not None
            emit = self._encode(CONVERSION_KIND, click, result)
            outcome, status = ADJUSTMENT_KIND, result["status"]
            target["emitted"].append(_emitted(offset, status, emit))
        state["decisions"].append(
            {
                "dedup_key": key,
                "conversion_id": str(target_id),
                "outcome": outcome,
                "emitted": [_emitted(offset, status, emit)],
            }
        )
        return Outcome(True, [emit])

    def _replay(self, decision: Decision, offset: int, click: Record) -> Emit | None:
        """The record this offset emitted when first read, or None if it changed nothing then."""
        kind = REJECTED_KIND if decision["outcome"] == REJECTED_KIND else CONVERSION_KIND
        for emitted in decision["emitted"]:
            if emitted["offset"] == offset:
                return Emit(
                    kind, str(click["click_id"]).encode(), emitted["value"], emitted["schema_version"]
                )
        return None

    def _decide_new(self, postback: Record, click: Record, key: str, offset: int) -> tuple[Decision, Emit]:
        cid = conversion_id(str(click["click_id"]), key)
        offer = self.catalog.offers.get(click["offer_id"])
        rules = self.rules_for(click["offer_id"])
        result = attribute(postback, click, rules)
        if isinstance(result, Attributed):
            ctx = RuleContext(offer, rules, result, self.rates)
            flags: list[str] = []
            for rule in self.registry.fraud_rules.values():
                refused = rule(postback, click, ctx)
                if refused is None:
                    continue
                action = self.catalog.fraud_action(
                    click["offer_id"], refused.reason, DEFAULT_ACTIONS.get(refused.reason, "refuse")
                )
                if action == "flag" and refused.reason not in flags:
                    flags.append(refused.reason)
                elif action == "refuse":
                    result = refused
                    break
            else:
                built = self._conversion(
                    postback, click, key, cid, offset, status_of(postback.get("status")), ctx, None, flags
                )
                if isinstance(built, dict):
                    emit = self._encode(CONVERSION_KIND, click, built)
                    decision: Decision = {
                        "dedup_key": key,
                        "conversion_id": cid,
                        "outcome": CONVERSION_KIND,
                        "emitted": [_emitted(offset, built["status"], emit)],
                    }
                    return decision, emit
                result = built
        emit = self._rejection(postback, click, result, cid)
        rejected: Decision = {
            "dedup_key": key,
            "conversion_id": cid,
            "outcome": REJECTED_KIND,
            "emitted": [_emitted(offset, result.reason, emit)],
        }
        return rejected, emit

    def _update(
        self, decision: Decision, postback: Record, click: Record, offset: int, status: str
    ) -> Outcome:
        """A status change: a new version of the same conversion, never a second conversion."""
        latest = decision["emitted"][-1]
        previous = self.codecs[CONVERSION_KIND].decode_version(latest["value"], latest["schema_version"])
        offer = self.catalog.offers.get(click["offer_id"])
        rules = self.rules_for(click["offer_id"])
        timing = Attributed(
            previous["conversion_time"], previous["click_to_conversion_s"] * 1000, previous["ctit_long"]
        )
        ctx = RuleContext(offer, rules, timing, self.rates)
        built = self._conversion(
            postback, click, decision["dedup_key"], decision["conversion_id"], offset, status, ctx, previous
        )
        if isinstance(built, Refused):
            return Outcome(False, [self._rejection(postback, click, built, decision["conversion_id"])])
        emit = self._encode(CONVERSION_KIND, click, built)
        decision["emitted"].append(_emitted(offset, status, emit))
        return Outcome(True, [emit])

    # -- records -------------------------------------------------------------------------------

    def _conversion(
        self,
        postback: Record,
        click: Record,
        key: str,
        cid: str,
        offset: int,
        status: str,
        ctx: RuleContext,
        previous: Record | None,
        flags: list[str] | None = None,
    ) -> dict[str, Any] | Refused:
        """The conversion record; amounts an update does not repeat carry over from `previous`.

        `flags`: fraud signals the offer flags rather than refuses, kept in the enrichment map
        (an update carries its conversion's flags: signals are decided once, on the first version).
        """
        revenue, revenue_currency = postback.get("revenue"), postback.get("currency")
        if revenue is None and previous is not None:
            revenue, revenue_currency = previous["revenue"], previous["revenue_currency"]
        revenue_usd, fx_rate = ZERO, None
        if revenue is not None:
            revenue_currency = revenue_currency or "USD"
            converted = to_usd(revenue, revenue_currency, self.rates)
            if converted is None:
                return Refused("unknown_currency", f"no USD rate for {revenue_currency}")
            revenue_usd, fx_rate = converted
        sender_payout, payout_currency = postback.get("payout"), postback.get("currency")
        if sender_payout is None and previous is not None:
            sender_payout, payout_currency = previous["payout"], previous["payout_currency"]
        event = event_name(postback) if previous is None else previous["event_name"]
        rule = ctx.offer.payout if ctx.offer is not None else _SENDER_PAYOUT
        payout = payout_for(rule, event, sender_payout, payout_currency, revenue_usd, self.rates)
        if payout is None:
            return Refused(
                "unknown_currency", f"no USD rate for payout currency {payout_currency or rule.currency}"
            )
        source = previous if previous is not None else postback
        conversion: dict[str, Any] = {
            "conversion_id": cid,
            "version": offset,
            "status": status,
            "previous_status": previous["status"] if previous is not None else None,
            "previous_version": previous["version"] if previous is not None else None,
            "dedup_key": key,
            "request_id": postback["request_id"],
            "received_at": postback["received_at"],
            "source": postback["source"],
            "click_id": click["click_id"],
            "event_name": event,
            "is_install": is_install(postback) if previous is None else previous["is_install"],
            "conversion_time": ctx.attributed.conversion_time,
            "install_time": source.get("install_time"),
            "click_time": click["clicked_at"],
            "click_to_conversion_s": ctx.attributed.click_to_conversion_ms // 1000,
            "ctit_long": ctx.attributed.ctit_long,
            "offer_id": click["offer_id"],
            "publisher_id": click["publisher_id"],
            "campaign_id": click.get("campaign_id"),
            "pub_click_id": click.get("pub_click_id"),
            "sub1": click.get("sub1"),  # spelled out: a comprehension here was ~8% of the build
            "sub2": click.get("sub2"),
            "sub3": click.get("sub3"),
            "sub4": click.get("sub4"),
            "sub5": click.get("sub5"),
            "transaction_id": postback.get("transaction_id") or (previous or {}).get("transaction_id"),
            "action_id": postback.get("action_id") or (previous or {}).get("action_id"),
            "goal": postback.get("goal") or (previous or {}).get("goal"),
            "revenue": revenue,
            "revenue_currency": revenue_currency if revenue is not None else None,
            "revenue_usd": revenue_usd,
            "payout": payout[0],
            "payout_currency": payout[1],
            "payout_usd": payout[2],
            "previous_revenue_usd": previous["revenue_usd"] if previous is not None else None,
            "previous_payout_usd": previous["payout_usd"] if previous is not None else None,
            "fx_rate": fx_rate,
            "country_code": source.get("country_code") or click.get("country_code"),
            "device_ip": source.get("device_ip"),
            "click_ip": click.get("ip"),
            "device_family": None,
            "os_family": None,
            "os_version": None,
            "browser_family": None,
            "platform": source.get("platform"),
            "app_id": source.get("app_id"),
            "site_id": source.get("site_id"),
            "idfa": source.get("idfa"),
            "gaid": source.get("gaid"),
            "android_id": source.get("android_id"),
            "is_retargeting": source.get("is_retargeting"),
            "event_value": source.get("event_value"),
            "extra": dict(source.get("extra") or {}),
            "enrichment": {},
            "attribution_type": click.get("attribution_type") or view.CLICK,
            "impression_id": click.get("impression_id"),
        }
        for enrich in self.registry.enrichers.values():
            enrich(conversion, postback, click, ctx)
        carried = previous["enrichment"].get(FLAGS_KEY) if previous is not None else None
        if flags:
            conversion["enrichment"][FLAGS_KEY] = ",".join(flags)
        elif carried:
            conversion["enrichment"][FLAGS_KEY] = carried
        return conversion

    def _rejection(self, postback: Record, click: Record | None, refusal: Refused, cid: str | None) -> Emit:
        record = {
            "request_id": postback["request_id"],
            "received_at": postback["received_at"],
            "stage": "stream",
            "reason": refusal.reason,
            "detail": refusal.detail,
            "field": None,
            "http_status": None,
            "source": postback["source"],
            "click_id": postback["click_id"],
            "method": postback.get("method"),
            "path": None,
            "query": None,
            "body": None,
            "content_type": None,
            "sender_ip": postback.get("sender_ip"),
            "offer_id": click["offer_id"] if click else None,
            "publisher_id": click["publisher_id"] if click else None,
            "campaign_id": click.get("campaign_id") if click else None,
            "event_name": event_name(postback),
            "payout": postback.get("payout"),
            "revenue": postback.get("revenue"),
            "currency": postback.get("currency"),
            "conversion_id": cid,
        }
        return Emit(
            REJECTED_KIND,
            str(postback["click_id"]).encode(),
            self.codecs[REJECTED_KIND].encode(record),
            self.codecs[REJECTED_KIND].version,
        )

    def _duplicate(self, postback: Record, click: Record, decision: Decision, offset: int) -> Emit:
        status = status_of(postback.get("status"))
        current = status_before(decision, offset)
        same = decision["outcome"] != CONVERSION_KIND or status == current
        record = {
            "request_id": postback["request_id"],
            "received_at": postback["received_at"],
            "source": postback["source"],
            "click_id": click["click_id"],
            "conversion_id": decision["conversion_id"],
            "dedup_key": decision["dedup_key"],
            "reason": "same_key" if same else "status_not_advanced",
            "status": status,
            "current_status": current,
            "event_name": event_name(postback),
            "offer_id": click["offer_id"],
            "publisher_id": click["publisher_id"],
            "payout": postback.get("payout"),
            "revenue": postback.get("revenue"),
            "currency": postback.get("currency"),
        }
        return self._encode(DUPLICATE_KIND, click, record)

    def _encode(self, kind: str, click: Record, record: Mapping[str, Any]) -> Emit:
        codec = self.codecs[kind]
        return Emit(kind, str(click["click_id"]).encode(), codec.encode(record), codec.version)


def _override(offer: Offer | None, name: str, default: float) -> float:
    """An offer's own value for a rule, or the deployment's default."""
    value: float | None = getattr(offer, name) if offer is not None else None
    return default if value is None else value


def _emitted(offset: int, status: str, emit: Emit) -> EmittedRecord:
    return {"offset": offset, "status": status, "value": emit.value, "schema_version": emit.schema_version}


_SENDER_PAYOUT = PayoutRule()
