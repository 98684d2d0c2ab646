"""Vendor macro names mapped to the pipeline's canonical fields.

Every tracker names the same thing differently (`subid`, `cid`, `clickid` are all the
click id; Everflow's `transaction_id` is *its* click id while everyone else's is an
order id). A source picks a preset and may override single names in its config, so a
new partner is a config change, not a code change.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from postbacks.conventions import CANONICAL_STATUSES as CANONICAL_STATUSES

#: Canonical field names, the keys of the raw postback record that come from parameters.
CANONICAL_FIELDS: frozenset[str] = frozenset(
    {
        "click_id",
        "event_name",
        "event_time",
        "install_time",
        "payout",
        "revenue",
        "currency",
        "transaction_id",
        "action_id",
        "goal",
        "status",
        "event_value",
        "idfa",
        "gaid",
        "android_id",
        "site_id",
        "app_id",
        "platform",
        "device_ip",
        "user_agent",
        "country_code",
        "is_retargeting",
        "is_attributed",
        "blocked_reason",
        "blocked_sub_reason",
    }
)

AliasMap = Mapping[str, str]

# Names every preset understands unless it says otherwise.
_GENERIC: dict[str, str] = {
    "clickid": "click_id",
    "click_id": "click_id",
    "event": "event_name",
    "event_name": "event_name",
    "event_time": "event_time",
    "install_time": "install_time",
    "payout": "payout",
    "revenue": "revenue",
    "currency": "currency",
    "transaction_id": "transaction_id",
    "txid": "transaction_id",
    "action_id": "action_id",
    "goal": "goal",
    "status": "status",
    "event_value": "event_value",
    "idfa": "idfa",
    "gaid": "gaid",
    "advertising_id": "gaid",
    "android_id": "android_id",
    "site_id": "site_id",
    "app_id": "app_id",
    "platform": "platform",
    "ip": "device_ip",
    "device_ip": "device_ip",
    "ua": "user_agent",
    "user_agent": "user_agent",
    "country_code": "country_code",
    "country": "country_code",
    "is_retargeting": "is_retargeting",
    "is_attributed": "is_attributed",
    "blocked_reason": "blocked_reason",
    "blocked_sub_reason": "blocked_sub_reason",
}


def _preset(overrides: dict[str, str], drop: tuple[str, ...] = ()) -> AliasMap:
    merged = {k: v for k, v in _GENERIC.items() if k not in drop}
    merged.update(overrides)
    return MappingProxyType(merged)


PRESETS: Mapping[str, AliasMap] = MappingProxyType(
    {
        "generic": _preset({}),
        # Keitaro: {subid} is its click id, {tid} the transaction id.
        "keitaro": _preset({"subid": "click_id", "tid": "transaction_id"}),
        # Voluum: {cid} click id, {txid} transaction, {et} event type.
        "voluum": _preset({"cid": "click_id", "et": "event_name"}),
        # Everflow and TUNE: transaction_id is the network's click id; amount is the sale amount.
        "everflow": _preset(
            {
                "transaction_id": "click_id",
                "amount": "revenue",
                "order_id": "transaction_id",
                "adv_event_id": "goal",
            }
        ),
        "tune": _preset(
            {
                "transaction_id": "click_id",
                "amount": "revenue",
                "adv_sub": "transaction_id",
                "goal_id": "goal",
            },
        ),
        # Affise: {sum} is revenue, {action_id} the advertiser's conversion id, numeric statuses.
        "affise": _preset({"sum": "revenue"}),
        # AppsFlyer push/postback macros.
        "appsflyer": _preset(
            {
                "event_revenue": "revenue",
                "event_revenue_currency": "currency",
                "json": "event_value",
                "install_unix_ts": "install_time",
            }
        ),
    }
)

#: The event a postback without an event name reports, per preset (absent: a plain conversion).
#: Only an MMP says "install" by sending nothing: AppsFlyer's install postback has no event name.
DEFAULT_EVENTS: Mapping[str, str] = MappingProxyType({"appsflyer": "install"})

# Sender statuses are mapped to the four the pipeline understands (postbacks.conventions).

_GENERIC_STATUSES: dict[str, str] = {
    "approved": "approved",
    "approve": "approved",
    "confirmed": "approved",
    "sale": "approved",
    "pending": "pending",
    "lead": "pending",
    "rejected": "rejected",
    "reject": "rejected",
    "declined": "rejected",
    "hold": "hold",
}

_VENDOR_STATUSES: dict[str, dict[str, str]] = {
    # Affise's numeric statuses.
    "affise": {"1": "approved", "2": "pending", "3": "rejected", "5": "hold"},
    # Keitaro: `rebill` is a further sale (its own `tid`), `sale` the default.
    "keitaro": {"rebill": "approved"},
}

STATUS_PRESETS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        name: MappingProxyType(
            {
                **_GENERIC_STATUSES,
                **_VENDOR_STATUSES.get(name, {}),
            }
        )
        for name in PRESETS
    }
)


def build_alias_map(preset: str, overrides: Mapping[str, str]) -> AliasMap:
    """A preset with per-source overrides; unknown presets or targets fail at config load."""
    if preset not in PRESETS:
        raise ValueError(f"unknown alias preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    bad = {target for target in overrides.values() if target not in CANONICAL_FIELDS}
    if bad:
        raise ValueError(f"aliases point at unknown fields: {', '.join(sorted(bad))}")
    return MappingProxyType({**PRESETS[preset], **overrides})
