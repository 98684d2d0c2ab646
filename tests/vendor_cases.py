"""Each vendor preset's postbacks on one click, with the outcome its DEFAULT settings must give.

Shared by the unit test (ingest parsing + stream decisions as pure functions) and the
integration test (the same requests through the real ingest and stream worker). Queries
use `{c}` for the click id and `{tNNN}` for the click time plus NNN seconds (unix seconds).
"""

from __future__ import annotations

from typing import Any


class _Fill(dict[str, Any]):
    def __init__(self, click_id: str, click_s: int) -> None:
        super().__init__(c=click_id)
        self.click_s = click_s

    def __missing__(self, key: str) -> str:
        assert key.startswith("t"), key
        return str(self.click_s + int(key[1:]))


def fill(query: str, click_id: str, click_s: int) -> str:
    """The query as sent for a click `click_id` made at unix second `click_s`."""
    return query.format_map(_Fill(click_id, click_s))


# (query, kind, status or reason, conversion label)
Row = tuple[str, str, str, str]
C, D, R = "conversion", "duplicate", "rejected"

CASES: dict[str, list[Row]] = {
    "keitaro": [
        ("subid={c}&status=lead&payout=5&tid=1", C, "pending", "A"),
        ("subid={c}&status=sale&tid=1", C, "approved", "A"),  # the lead confirmed
        ("subid={c}&status=sale&payout=7&tid=2", C, "approved", "B"),  # an upsell: a new tid
        ("subid={c}&status=sale&payout=7&tid=2", D, "same_key", "B"),  # its retry
        ("subid={c}&status=lead&tid=1", D, "status_not_advanced", "A"),  # an update out of order
        ("subid={c}&status=rebill&payout=3&tid=3", C, "approved", "C"),  # a rebill
        ("subid={c}&status=rejected&tid=2", C, "rejected", "B"),  # the upsell charged back
        ("subid={c}&status=sale&payout=9", C, "approved", "N"),  # no tid: the click's own conversion
        ("subid={c}&status=rejected", C, "rejected", "N"),
    ],
    "everflow": [
        ("transaction_id={c}&amount=10&order_id=O1", C, "approved", "A"),
        ("transaction_id={c}&amount=20&order_id=O2", C, "approved", "B"),  # another order
        ("transaction_id={c}&amount=5&order_id=O1&adv_event_id=7", C, "approved", "E"),  # an event
        ("transaction_id={c}&amount=10&order_id=O1", D, "same_key", "A"),
        ("transaction_id={c}&order_id=O2&status=rejected", C, "rejected", "B"),
        ("transaction_id={c}&amount=1&adv_event_id=8", C, "approved", "G"),  # an event, no order
        ("transaction_id={c}&amount=1&adv_event_id=8", D, "same_key", "G"),
        ("transaction_id={c}&order_id=O2&status=pending", D, "status_not_advanced", "B"),  # late
    ],
    "tune": [
        ("transaction_id={c}&amount=10&adv_sub=S1&status=pending", C, "pending", "A"),
        ("transaction_id={c}&amount=12&adv_sub=S2", C, "approved", "B"),
        ("transaction_id={c}&adv_sub=S1&status=approved", C, "approved", "A"),
        ("transaction_id={c}&amount=3&adv_sub=S1&goal_id=4", C, "approved", "G"),  # another goal
        ("transaction_id={c}&adv_sub=S1&status=pending", D, "status_not_advanced", "A"),
        ("transaction_id={c}&amount=12&adv_sub=S2", D, "same_key", "B"),
    ],
    "affise": [
        ("clickid={c}&goal=1&action_id=A1&sum=4&status=2", C, "pending", "A"),
        ("clickid={c}&goal=1&action_id=A1&status=1", C, "approved", "A"),
        ("clickid={c}&goal=2&action_id=A2&sum=9&status=1", C, "approved", "B"),  # another goal
        ("clickid={c}&goal=1&action_id=A3&sum=4&status=1", C, "approved", "C"),  # same goal, new action
        ("clickid={c}&goal=1&action_id=A1&status=2", D, "status_not_advanced", "A"),
        ("clickid={c}&goal=2&action_id=A2&sum=9&status=1", D, "same_key", "B"),
        ("clickid={c}&goal=1&action_id=A3&status=3", C, "rejected", "C"),
        ("clickid={c}&goal=reg&status=5", C, "hold", "R"),  # no action id: once per goal
        ("clickid={c}&goal=reg&status=1", C, "approved", "R"),
    ],
    "voluum": [
        ("cid={c}&payout=2&txid=T1&et=deposit", C, "approved", "A"),
        ("cid={c}&payout=3&txid=T2&et=deposit", C, "approved", "B"),
        ("cid={c}&payout=1&txid=T1&et=upsell", C, "approved", "U"),  # same txid, other event type
        ("cid={c}&payout=2&txid=T1&et=deposit", D, "same_key", "A"),
        ("cid={c}&payout=1", C, "approved", "N"),  # no txid, no et: the click's conversion
        ("cid={c}&payout=1", D, "same_key", "N"),
        ("cid={c}&txid=T2&et=deposit&status=rejected", C, "rejected", "B"),  # a reversal of T2 only
        ("cid={c}&txid=T2&et=deposit&status=pending", D, "status_not_advanced", "B"),  # late
    ],
    "appsflyer": [
        ("clickid={c}&install_unix_ts={t600}", C, "approved", "I"),  # no event name: an install
        ("clickid={c}&event_name=af_install&install_unix_ts={t600}", D, "same_key", "I"),
        (
            "clickid={c}&event_name=af_purchase&event_revenue=5&event_time={t900}",
            C,
            "approved",
            "P1",
        ),
        (
            "clickid={c}&event_name=af_purchase&event_revenue=6&event_time={t960}",
            C,
            "approved",
            "P2",
        ),  # the same event later: another purchase
        (
            "clickid={c}&event_name=af_purchase&event_revenue=5&event_time={t900}",
            D,
            "same_key",
            "P1",
        ),
        (
            "clickid={c}&event_name=af_purchase&event_revenue=2&txid=X&event_time={t990}",
            C,
            "approved",
            "X",
        ),
        (
            "clickid={c}&event_name=af_purchase&event_revenue=2&txid=X&event_time={t999}",
            D,
            "same_key",
            "X",
        ),  # a transaction id wins over time
    ],
    "generic": [
        ("clickid={c}&payout=2&txid=T1&status=pending", C, "pending", "A"),  # no event: not an install
        ("clickid={c}&payout=3&txid=T2", C, "approved", "B"),
        ("clickid={c}&txid=T1&status=approved", C, "approved", "A"),
        ("clickid={c}&payout=3&txid=T2", D, "same_key", "B"),
        ("clickid={c}&txid=T1&status=pending", D, "status_not_advanced", "A"),
        ("clickid={c}&payout=1&event=lead&status=pending", C, "pending", "L"),
        ("clickid={c}&event=lead&status=approved", C, "approved", "L"),
        ("clickid={c}&payout=1&goal=2&action_id=Q", C, "approved", "Q"),
        ("clickid={c}&event=install&install_time={t600}", C, "approved", "I"),
        (
            "clickid={c}&event=install&install_time={t600}&txid=T9",
            D,
            "same_key",
            "I",
        ),  # one install per click
    ],
}
