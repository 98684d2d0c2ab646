"""Deduplication keys: which postbacks describe the same conversion.

A policy maps a postback (and its click) to a key; two postbacks with the same key
on the same click are one conversion (a retry, or a status update of it), and a
different key on the same click is another conversion (an upsell, a rebill, a second
goal). Policies are chosen per source (sources file `dedup_policy`); the default,
`auto`, is the identity the source's vendor preset uses (`VENDOR_POLICIES`, the table
in docs/sending.md "Vendor macros"). New policies are registered in `stream.registry`.

Installs are installs only when the event says so: an install event name (`install`,
`af_install`, `first_open`...), which the AppsFlyer preset fills in for postbacks
without an event name (ingest/aliases.py `DEFAULT_EVENTS`). A postback without an
event name is a plain `conversion` (a CPA lead or sale): never deduplicated as an
install, never subject to the click-injection (CTIT) rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

Record = Mapping[str, Any]

INSTALL = "install"
#: The event name of a postback that names none: a network's plain conversion.
CONVERSION = "conversion"
_INSTALL_NAMES = frozenset({"install", "af_install", "installs", "first_open", "app_install"})


def event_name(postback: Record) -> str:
    name = str(postback.get("event_name") or "")
    if not name:
        return CONVERSION
    return INSTALL if name.lower() in _INSTALL_NAMES else name


def is_install(postback: Record) -> bool:
    return event_name(postback) == INSTALL


def _part(value: Any) -> str:
    """A key component; `|` in a sender's value is escaped so two components cannot run together."""
    return "" if value is None else str(value).replace("\\", "\\\\").replace("|", "\\|")


# -- the policies sources may select by name --------------------------------------------------


def per_click(postback: Record, click: Record) -> str:
    """One conversion per click and event (an install, or each distinct event name)."""
    return f"click|{event_name(postback)}"


def per_transaction(postback: Record, click: Record) -> str:
    """Click + transaction id: rebills and upsells with a new id are new conversions."""
    txid = postback.get("transaction_id")
    return f"txn|{txid}" if txid else per_event_occurrence(postback, click)


def per_action(postback: Record, click: Record) -> str:
    """Offer + goal + action id (Affise-style advertiser conversion ids)."""
    action = postback.get("action_id")
    if not action:
        return per_transaction(postback, click)
    return f"action|{click['offer_id']}|{postback.get('goal') or ''}|{action}"


def per_event_occurrence(postback: Record, click: Record) -> str:
    """Click + event name + event time: in-app events with no transaction id."""
    return f"event|{event_name(postback)}|{postback.get('event_time') or ''}"


def legacy_auto(postback: Record, click: Record) -> str:
    """The default before vendor identities: unnamed postbacks were installs, once per click.

    Kept so a deployment can pin the old keys for sources whose conversions are still
    receiving status updates across the upgrade (`dedup_policy = "legacy_auto"`).
    """
    if not postback.get("event_name") or is_install(postback):
        return "click|install"
    return per_transaction(postback, click)


# -- vendor identities: what each preset's vendor treats as one conversion --------------------
#
# Every identity starts with the install rule: an install is once per click, whatever
# ids it carries (a second install on one click is a retry or a fraud, never revenue).


def generic(postback: Record, click: Record) -> str:
    """Transaction id, else goal + action id, else one conversion per click and event name."""
    if is_install(postback):
        return per_click(postback, click)
    txid = postback.get("transaction_id")
    if txid:
        return f"txn|{txid}"
    action = postback.get("action_id")
    if action:
        return f"action|{_part(postback.get('goal'))}|{_part(action)}"
    return f"event|{_part(event_name(postback))}"


def keitaro(postback: Record, click: Record) -> str:
    """Keitaro `tid`: each distinct tid is a sale (an upsell/rebill); without one, the click's conversion."""
    if is_install(postback):
        return per_click(postback, click)
    tid = postback.get("transaction_id")
    return f"txn|{tid}" if tid else "click|conversion"


def _per_goal(postback: Record, click: Record, id_field: str, kind: str) -> str:
    """Installs once per click; else one conversion per goal and `id_field` (once per goal without it)."""
    if is_install(postback):
        return per_click(postback, click)
    goal, ident = _part(postback.get("goal")), postback.get(id_field)
    return f"{kind}|{goal}|{_part(ident)}" if ident else f"goal|{goal}"


def everflow(postback: Record, click: Record) -> str:
    """Everflow `adv_event_id` (the event; none = the base conversion) + `order_id`."""
    return _per_goal(postback, click, "transaction_id", "order")


def tune(postback: Record, click: Record) -> str:
    """TUNE `adv_sub` (the advertiser's order id), per `goal_id`; without one, once per click and goal."""
    return everflow(postback, click)


def affise(postback: Record, click: Record) -> str:
    """Affise `goal` + `action_id` (the advertiser's conversion id); without one, once per goal."""
    return _per_goal(postback, click, "action_id", "action")


def voluum(postback: Record, click: Record) -> str:
    """Voluum `txid` + `et` (event type); without a txid, once per click and event type."""
    if is_install(postback):
        return per_click(postback, click)
    event, txid = _part(event_name(postback)), postback.get("transaction_id")
    return f"txn|{event}|{_part(txid)}" if txid else f"event|{event}"


def appsflyer(postback: Record, click: Record) -> str:
    """AppsFlyer: the install once per click; an in-app event by name + transaction id, else + event time."""
    if is_install(postback):
        return per_click(postback, click)
    event, txid = _part(event_name(postback)), postback.get("transaction_id")
    if txid:
        return f"txn|{event}|{_part(txid)}"
    return f"event|{event}|{postback.get('event_time') or ''}"


#: The policy `auto` stands for, by the source's alias preset (docs/sending.md "Vendor macros").
VENDOR_POLICIES: Mapping[str, str] = {
    "generic": "generic",
    "keitaro": "keitaro",
    "everflow": "everflow",
    "tune": "tune",
    "affise": "affise",
    "voluum": "voluum",
    "appsflyer": "appsflyer",
}


def resolve_policy(configured: str, preset: str) -> str:
    """The policy a source uses: its own choice, or for `auto` its vendor preset's identity."""
    if configured != "auto":
        return configured
    return VENDOR_POLICIES.get(preset, "generic")


def auto(postback: Record, click: Record) -> str:
    """`auto` for a source whose preset is unknown to the stream: the generic identity."""
    return generic(postback, click)


def conversion_id(click_id: str, dedup_key: str) -> str:
    """Stable across replays and workers: the same click and key always give the same id."""
    digest = hashlib.blake2b(f"{click_id}\x1f{dedup_key}".encode(), digest_size=16)
    return digest.hexdigest()
