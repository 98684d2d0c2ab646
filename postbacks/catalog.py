"""The offer catalog: where a click is sent, and (for the stream) what an offer pays and allows.

Kept apart from the sources file because it holds no secrets and is shared by
ingest (click redirects) and the stream (payout rules, attribution windows, CTIT
limits, click TTL, view-through window). Every per-offer value is optional; the settings give defaults.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: Macros an offer URL may use; values are URL-encoded when substituted.
CLICK_MACROS = frozenset(
    {"clickid", "offer_id", "publisher_id", "campaign_id", "sub1", "sub2", "sub3", "sub4", "sub5"}
)


class CatalogError(ValueError):
    pass


PAYOUT_KINDS = frozenset({"sender", "cpa", "revshare"})
#: What the stream does with a fraud signal's finding (docs/stream.md "Fraud signals"): refuse the
#: postback with the signal's reason, flag the conversion with it, or ignore it.
FRAUD_ACTIONS = frozenset({"refuse", "flag", "off"})


@dataclass(frozen=True, slots=True)
class PayoutRule:
    """What the network pays the publisher for a conversion of this offer.

    `sender`: the postback's own payout; `cpa`: a fixed amount (per event name when
    listed in `per_event`); `revshare`: `percent` of the conversion's USD revenue.
    """

    kind: str = "sender"
    amount: Decimal | None = None
    currency: str = "USD"
    per_event: Mapping[str, Decimal] = field(default_factory=dict)
    percent: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    url: str | None = None
    name: str | None = None
    payout: PayoutRule = PayoutRule()
    window_install_days: float | None = None
    window_event_days: float | None = None
    ctit_min_s: float | None = None
    ctit_long_s: float | None = None
    click_ttl_days: float | None = None
    view_window_hours: float | None = None
    # Signal reason -> action, for this offer (overrides the catalog's [fraud] table).
    fraud: Mapping[str, str] = field(default_factory=dict)

    def landing_url(self, values: Mapping[str, str | None]) -> str | None:
        if self.url is None:
            return None
        return self.url.format_map({m: quote(values.get(m) or "", safe="") for m in CLICK_MACROS})


@dataclass(frozen=True, slots=True)
class Catalog:
    offers: Mapping[str, Offer]
    # Signal reason -> action for every offer that does not set its own ([fraud] table).
    fraud: Mapping[str, str] = field(default_factory=dict)

    def fraud_action(self, offer_id: str, reason: str, default: str) -> str:
        """The offer's action for a signal, else the catalog's, else the signal's own default."""
        offer = self.offers.get(offer_id)
        if offer is not None and reason in offer.fraud:
            return offer.fraud[reason]
        return self.fraud.get(reason, default)

    @property
    def restricts_offers(self) -> bool:
        """With no offers configured, any offer id is accepted (tracking-only setups)."""
        return bool(self.offers)


EMPTY_CATALOG = Catalog(offers={})


def load_catalog(path: Path | None) -> Catalog:
    if path is None:
        return EMPTY_CATALOG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    return parse_catalog(data)


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    offers: dict[str, Offer] = {}
    for offer_id, spec in data.get("offers", {}).items():
        url = spec.get("url")
        if url is not None:
            fields = {f for _, f, _, _ in string.Formatter().parse(url) if f is not None}
            unknown = fields - CLICK_MACROS
            if unknown:
                raise CatalogError(f"offers.{offer_id}.url: unknown macros {sorted(unknown)}")
        at = f"offers.{offer_id}"
        offers[str(offer_id)] = Offer(
            str(offer_id),
            url,
            spec.get("name"),
            payout=_payout_rule(spec.get("payout", {}), at),
            window_install_days=_number(spec, "attribution_window_install_days", at),
            window_event_days=_number(spec, "attribution_window_event_days", at),
            ctit_min_s=_number(spec, "ctit_min_s", at),
            ctit_long_s=_number(spec, "ctit_long_s", at),
            click_ttl_days=_number(spec, "click_ttl_days", at),
            view_window_hours=_number(spec, "view_through_window_hours", at),
            fraud=_fraud_actions(spec.get("fraud", {}), f"{at}.fraud"),
        )
    return Catalog(offers=offers, fraud=_fraud_actions(data.get("fraud", {}), "fraud"))


def _fraud_actions(spec: Any, at: str) -> dict[str, str]:
    if not isinstance(spec, dict):
        raise CatalogError(f"{at} must be a table of signal = action")
    bad = {k: v for k, v in spec.items() if v not in FRAUD_ACTIONS}
    if bad:
        raise CatalogError(f"{at}: actions must be one of {sorted(FRAUD_ACTIONS)}, got {bad}")
    return {str(k): str(v) for k, v in spec.items()}


def _number(spec: Mapping[str, Any], name: str, at: str) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or value < 0:
        raise CatalogError(f"{at}.{name} must be a non-negative number")
    return float(value)


def _decimal(value: Any, at: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise CatalogError(f"{at} is not a number: {value!r}") from exc
    if not result.is_finite() or result < 0:
        raise CatalogError(f"{at} must be a finite non-negative number")
    return result


def _payout_rule(spec: Mapping[str, Any], at: str) -> PayoutRule:
    kind = spec.get("type", "sender")
    if kind not in PAYOUT_KINDS:
        raise CatalogError(f"{at}.payout.type must be one of {sorted(PAYOUT_KINDS)}")
    per_event = {str(k): _decimal(v, f"{at}.payout.events.{k}") for k, v in spec.get("events", {}).items()}
    amount = _decimal(spec["amount"], f"{at}.payout.amount") if "amount" in spec else None
    percent = _decimal(spec["percent"], f"{at}.payout.percent") if "percent" in spec else None
    if kind == "cpa" and amount is None and not per_event:
        raise CatalogError(f"{at}.payout: cpa needs `amount` or `events`")
    if kind == "revshare" and (percent is None or percent > 100):
        raise CatalogError(f"{at}.payout: revshare needs `percent` between 0 and 100")
    return PayoutRule(kind, amount, str(spec.get("currency", "USD")).upper(), per_event, percent)
