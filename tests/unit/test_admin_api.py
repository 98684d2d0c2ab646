"""The admin API (advertiser adjustments) in-process: auth, checks, the record, every refusal kept."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from ingest.app import IngestApp
from ingest.sources import ConfigError, parse_sources
from postbacks.catalog import parse_catalog
from postbacks.settings import Settings
from tests.unit.test_ingest_app import RecordingPublisher

ADMIN = "admin-token-0123456789abcdef"
CID = "0123456789abcdef0123456789abcdef"
SOURCES = {"sources": {"default": {"auth": "token", "tokens": ["tok-0123456789abcdef"]}}}


def client(publisher: RecordingPublisher, admin: dict[str, Any] | None) -> httpx.AsyncClient:
    sources = parse_sources({**SOURCES, **({"admin": admin} if admin is not None else {})})
    app = IngestApp(Settings(max_body_bytes=2048), sources, parse_catalog({}), publisher)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


BODY = {"adjustment_id": "adj-1", "click_id": "c1", "action": "reject", "reason": "chargeback #7"}


async def test_an_adjustment_is_published_with_who_and_why() -> None:
    publisher = RecordingPublisher()
    async with client(publisher, {"tokens": {"alice": ADMIN}}) as http:
        answer = await http.post(
            f"/conversions/{CID}/status",
            json={**BODY, "action": "payout", "payout": "1.25", "currency": "eur"},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
    assert answer.status_code == 202, answer.text
    [record] = publisher.decoded("postbacks.raw")
    assert publisher.sent[0][1] == b"c1"  # keyed by the click: decided in its state
    assert (record["adjustment_conversion_id"], record["adjustment_id"], record["adjustment_action"]) == (
        CID,
        "adj-1",
        "payout",
    )
    assert (record["adjusted_by"], record["adjustment_reason"], record["source"]) == (
        "alice",
        "chargeback #7",
        "admin",
    )
    assert (record["payout"], record["currency"]) == (Decimal("1.25"), "EUR")
    assert record["request_id"] == answer.json()["request_id"] and record["event_name"] is None


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason"),
    [
        (f"/conversions/{CID}/status", BODY, {}, 401, "auth_missing"),
        (
            f"/conversions/{CID}/status",
            BODY,
            {"authorization": "Bearer wrong-token-0123456789"},
            403,
            "auth_failed",
        ),
        ("/conversions/not-a-conversion/status", BODY, None, 404, "unknown_conversion"),
        (f"/conversions/{CID}/other", BODY, None, 404, "not_found"),
        (f"/conversions/{CID}/status", {**BODY, "reason": ""}, None, 400, "missing_reason"),
        (f"/conversions/{CID}/status", {**BODY, "action": "delete"}, None, 400, "bad_action"),
        (f"/conversions/{CID}/status", {**BODY, "action": "payout"}, None, 400, "missing_payout"),
        (f"/conversions/{CID}/status", {**BODY, "action": "payout", "payout": "-1"}, None, 400, "bad_number"),
        (
            f"/conversions/{CID}/status",
            {**BODY, "action": "payout", "payout": 2, "currency": "ZZZ"},
            None,
            400,
            "unknown_currency",
        ),
        (
            f"/conversions/{CID}/status",
            {**BODY, "payout": "3"},
            None,
            400,
            "bad_value",
        ),  # not a payout action
        (f"/conversions/{CID}/status", {**BODY, "token": "x"}, None, 400, "bad_value"),  # unknown field
        (f"/conversions/{CID}/status", {**BODY, "click_id": "a b"}, None, 400, "bad_click_id"),
        (f"/conversions/{CID}/status", {**BODY, "adjustment_id": "x" * 200}, None, 400, "value_too_long"),
    ],
)
async def test_refusals_say_why_and_are_kept(
    path: str, body: dict[str, Any], headers: dict[str, str] | None, status: int, reason: str
) -> None:
    publisher = RecordingPublisher()
    async with client(publisher, {"tokens": {"alice": ADMIN}}) as http:
        answer = await http.post(
            path, json=body, headers=headers if headers is not None else {"authorization": f"Bearer {ADMIN}"}
        )
    assert (answer.status_code, answer.json()["reason"]) == (status, reason)
    assert publisher.decoded("postbacks.raw") == []
    [rejected] = publisher.decoded("postbacks.rejected")
    assert (rejected["reason"], rejected["http_status"], rejected["stage"]) == (reason, status, "ingest")
    assert ADMIN not in repr(rejected)


async def test_malformed_bodies_wrong_methods_and_no_admin_section() -> None:
    publisher = RecordingPublisher()
    async with client(publisher, {"tokens": {"alice": ADMIN}}) as http:
        auth = {"authorization": f"Bearer {ADMIN}"}
        bad_json = await http.post(
            f"/conversions/{CID}/status", content=b"{", headers={**auth, "content-type": "application/json"}
        )
        form = await http.post(f"/conversions/{CID}/status", data={"a": "b"}, headers=auth)
        get = await http.get(f"/conversions/{CID}/status", headers=auth)
        big = await http.post(f"/conversions/{CID}/status", json={**BODY, "reason": "x" * 4000}, headers=auth)
    assert (bad_json.status_code, bad_json.json()["reason"]) == (400, "malformed_body")
    assert (form.status_code, form.json()["reason"]) == (415, "unsupported_media_type")
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    assert (big.status_code, big.json()["reason"]) == (413, "body_too_large")
    async with client(RecordingPublisher(), None) as http:
        off = await http.post(
            f"/conversions/{CID}/status", json=BODY, headers={"authorization": f"Bearer {ADMIN}"}
        )
    assert (off.status_code, off.json()["reason"]) == (403, "admin_disabled")


@pytest.mark.parametrize(
    "admin",
    [{"tokens": {"alice": "short"}}, {"tokens": ["x" * 20]}, {"tokens": {"a": "t" * 20, "b": "t" * 20}}],
)
def test_admin_tokens_are_checked_at_start(admin: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="admin"):
        parse_sources({**SOURCES, "admin": admin})
