"""`postbacks adjust`: an advertiser adjustment through the admin API, from the command line.

The admin API needs the conversion's click id (the stream's state is keyed by it); the
command looks it up in ClickHouse when not given, takes the admin token from the
sources file's `[admin.tokens]` (by `--admin` name, or the only one), and sends one
request with a client adjustment id (a fresh one unless `--id` repeats an earlier
attempt: the same id is applied once however often it is sent).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

_CONVERSION_ID = re.compile(r"^[0-9a-f]{32}$")

Query = Callable[[str], tuple[list[str], list[list[Any]]]]


class AdjustError(ValueError):
    """The adjustment cannot be sent; the message says why."""


@dataclass(frozen=True, slots=True)
class Adjustment:
    conversion_id: str
    action: str
    reason: str
    adjustment_id: str = ""
    click_id: str | None = None
    payout: str | None = None
    currency: str | None = None

    def body(self, click_id: str) -> dict[str, str]:
        body = {
            "adjustment_id": self.adjustment_id,
            "click_id": click_id,
            "action": self.action,
            "reason": self.reason,
        }
        if self.payout is not None:
            body["payout"] = self.payout
        if self.currency is not None:
            body["currency"] = self.currency
        return body


def admin_token(tokens: Mapping[str, str], name: str | None) -> str:
    if not tokens:
        raise AdjustError("the sources file has no [admin.tokens]")
    if name is None:
        if len(tokens) != 1:
            raise AdjustError(f"several admins ({', '.join(sorted(tokens))}): choose one with --admin")
        return next(iter(tokens.values()))
    if name not in tokens:
        raise AdjustError(f"no admin {name!r} in [admin.tokens]")
    return tokens[name]


def click_id_of(conversion_id: str, query: Query) -> str:
    """The conversion's click, from ClickHouse (the id is checked first: it goes into SQL)."""
    if not _CONVERSION_ID.match(conversion_id):
        raise AdjustError("a conversion id is 32 lower-case hex digits")
    _, rows = query(f"SELECT click_id FROM conversions FINAL WHERE conversion_id = '{conversion_id}' LIMIT 1")
    if not rows:
        raise AdjustError(
            f"no conversion {conversion_id} in ClickHouse (pass --click-id if it is not there yet)"
        )
    return str(rows[0][0])


def send(
    client: httpx.Client, adjustment: Adjustment, token: str, query: Query
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) of the admin API for this adjustment."""
    if not adjustment.adjustment_id:
        adjustment = replace(adjustment, adjustment_id=uuid.uuid4().hex)
    click_id = adjustment.click_id or click_id_of(adjustment.conversion_id, query)
    answer = client.post(
        f"/conversions/{adjustment.conversion_id}/status",
        json=adjustment.body(click_id),
        headers={"authorization": f"Bearer {token}"},
    )
    try:
        data = answer.json()
    except ValueError:
        data = {"status": "error", "detail": answer.text[:200]}
    data.setdefault("adjustment_id", adjustment.adjustment_id)
    return answer.status_code, data
