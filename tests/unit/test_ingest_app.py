"""The ingest ASGI app end to end in-process, Kafka replaced by a recording fake.

Real-broker behaviour (acks, 503 when the broker stops) is in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.app import IngestApp
from ingest.auth import sign
from ingest.publisher import Unavailable
from ingest.sources import parse_sources
from postbacks.catalog import parse_catalog
from postbacks.settings import Settings
from schemas import CLICK, IMPRESSION, POSTBACK_RAW, POSTBACK_REJECTED, Codec

TOKEN = "tok-0123456789abcdef"
HMAC_SECRET = "hmac-secret-0123456789"


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.fail = False
        self.ready = True
        self.in_flight = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> float:
        if self.fail:
            raise Unavailable("broker away")
        self.sent.append((topic, key, value, list(headers)))
        return 0.001

    def decoded(self, topic: str) -> list[dict[str, Any]]:
        codec = Codec(
            {
                "postbacks.raw": POSTBACK_RAW,
                "clicks.raw": CLICK,
                "impressions.raw": IMPRESSION,
                "postbacks.rejected": POSTBACK_REJECTED,
            }[topic]
        )
        return [codec.decode(v, h) for t, _, v, h in self.sent if t == topic]


SOURCES = parse_sources(
    {
        "trusted_proxies": ["127.0.0.0/8"],
        "sources": {
            "default": {"auth": "token", "tokens": [TOKEN]},
            "signed": {"auth": "hmac", "hmac_secrets": [HMAC_SECRET], "preset": "appsflyer"},
            "partner": {"auth": "token", "tokens": [TOKEN], "allow_ips": ["198.51.100.0/24"]},
        },
    }
)
CATALOG = parse_catalog(
    {"offers": {"o1": {"url": "https://adv.example/land?c={clickid}&p={publisher_id}"}, "o2": {}}}
)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(publisher: RecordingPublisher) -> httpx.AsyncClient:
    app = IngestApp(Settings(max_body_bytes=2048, retry_after_s=7), SOURCES, CATALOG, publisher)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


async def test_get_postback_is_published_then_acknowledged(
    client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    response = await client.get(
        "/postback",
        params={
            "clickid": "c1",
            "payout": "1.5",
            "currency": "eur",
            "event_name": "purchase",
            "sub7": "x",
            "token": TOKEN,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    [record] = publisher.decoded("postbacks.raw")
    assert publisher.sent[0][1] == b"c1"  # keyed by click id
    assert record["click_id"] == "c1" and record["payout"] == Decimal("1.5") and record["currency"] == "EUR"
    assert record["source"] == "default" and record["method"] == "GET" and record["sender_ip"] == "127.0.0.1"
    assert record["extra"] == {"sub7": "x"}
    assert record["request_id"] == response.json()["request_id"]


async def test_post_form_and_json_bodies(client: httpx.AsyncClient, publisher: RecordingPublisher) -> None:
    form = await client.post("/postback", data={"clickid": "c2", "revenue": "3", "token": TOKEN})
    assert form.status_code == 200, form.text
    body = {
        "clickid": "c3",
        "revenue": 4.25,
        "event_value": {"sku": "A", "qty": 2},
        "is_retargeting": True,
        "token": TOKEN,
    }
    js = await client.post("/postback", json=body)
    assert js.status_code == 200, js.text
    first, second = publisher.decoded("postbacks.raw")
    assert (first["click_id"], first["revenue"]) == ("c2", Decimal(3))
    assert second["revenue"] == Decimal("4.25") and second["is_retargeting"] is True
    assert json.loads(second["event_value"]) == {"sku": "A", "qty": 2}


async def test_refusal_is_kept_with_reason_and_without_the_secret(
    client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    response = await client.get("/postback", params={"clickid": "c4", "payout": "lots", "token": TOKEN})
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_number" and response.json()["field"] == "payout"
    assert publisher.decoded("postbacks.raw") == []
    [rejected] = publisher.decoded("postbacks.rejected")
    assert rejected["reason"] == "bad_number" and rejected["http_status"] == 400
    assert rejected["source"] == "default" and rejected["stage"] == "ingest"
    assert "payout=lots" in rejected["query"]
    assert TOKEN not in rejected["query"] and "token=REDACTED" in rejected["query"]


async def test_auth_failures(client: httpx.AsyncClient, publisher: RecordingPublisher) -> None:
    missing = await client.get("/postback?clickid=c5")
    wrong = await client.get("/postback?clickid=c5&token=wrong-wrong-wrong-wrong")
    elsewhere = await client.get(f"/postback/partner?clickid=c5&token={TOKEN}")
    unknown = await client.get(f"/postback/nobody?clickid=c5&token={TOKEN}")
    assert [r.status_code for r in (missing, wrong, elsewhere, unknown)] == [401, 403, 403, 404]
    reasons = [r["reason"] for r in publisher.decoded("postbacks.rejected")]
    assert reasons == ["auth_missing", "auth_failed", "ip_not_allowed", "unknown_source"]
    assert all(TOKEN not in (r["query"] or "") for r in publisher.decoded("postbacks.rejected"))


async def test_forwarded_for_from_trusted_proxy_passes_allow_list(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"/postback/partner?clickid=c6&token={TOKEN}", headers={"x-forwarded-for": "198.51.100.20"}
    )
    assert response.status_code == 200, response.text


async def test_hmac_signed_post(client: httpx.AsyncClient, publisher: RecordingPublisher) -> None:
    body = b"clickid=c7&event_revenue=2&event_revenue_currency=USD"
    stamp = str(int(time.time()))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-timestamp": stamp,
        "x-signature": sign(HMAC_SECRET, stamp.encode() + b"." + body),
    }
    ok = await client.post("/postback/signed", content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    forged = await client.post("/postback/signed", content=body.replace(b"=2", b"=200"), headers=headers)
    assert forged.status_code == 403
    assert publisher.decoded("postbacks.raw")[0]["revenue"] == Decimal(2)


async def test_size_and_media_type_limits(client: httpx.AsyncClient, publisher: RecordingPublisher) -> None:
    big = await client.post(
        "/postback",
        content=b"clickid=c8&x=" + b"a" * 5000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413 and big.json()["reason"] == "body_too_large"
    xml = await client.post(f"/postback?token={TOKEN}", content=b"<x/>", headers={"content-type": "text/xml"})
    assert xml.status_code == 415
    bad_json = await client.post(
        f"/postback?token={TOKEN}", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["reason"] == "malformed_body"
    assert [r["reason"] for r in publisher.decoded("postbacks.rejected")] == [
        "body_too_large",
        "unsupported_media_type",
        "malformed_body",
    ]


async def test_broker_unavailable_is_503_with_retry_after(
    client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    publisher.fail = True
    good = await client.get(f"/postback?clickid=c9&token={TOKEN}")
    bad = await client.get(f"/postback?clickid=c9&payout=x&token={TOKEN}")
    for response in (good, bad):  # a refusal that cannot be kept is not answered 4xx either
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"


async def test_click_redirects_or_answers_json(
    client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    redirect = await client.get(
        "/click?offer_id=o1&publisher_id=p%201&sub1=s&pub_click_id=PUB-9",
        headers={"user-agent": "UA/1", "referer": "https://pub.example/"},
    )
    assert redirect.status_code == 302
    click_id = redirect.json()["click_id"]
    assert redirect.headers["location"] == f"https://adv.example/land?c={click_id}&p=p%201"
    as_json = await client.get("/click?offer_id=o2&publisher_id=p2&format=json")
    assert as_json.status_code == 200 and as_json.json()["click_id"] != click_id
    first, second = publisher.decoded("clicks.raw")
    assert first["click_id"] == click_id and first["offer_id"] == "o1" and first["publisher_id"] == "p 1"
    assert (first["sub1"], first["pub_click_id"], first["user_agent"]) == ("s", "PUB-9", "UA/1")
    assert first["referrer"] == "https://pub.example/" and first["ip"] == "127.0.0.1"
    assert second["click_id"] == as_json.json()["click_id"] and second["offer_id"] == "o2"
    assert len(click_id) >= 22  # 128 random bits, url-safe


async def test_click_refusals(client: httpx.AsyncClient, publisher: RecordingPublisher) -> None:
    assert (await client.get("/click?offer_id=nope&publisher_id=p")).status_code == 404
    missing = await client.get("/click?offer_id=o1")
    assert missing.status_code == 400 and missing.json()["reason"] == "missing_publisher_id"
    assert publisher.decoded("clicks.raw") == []


async def test_a_click_country_fills_country_code_and_a_bad_one_is_kept_in_extra(
    client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    """The fraud signal country_mismatch compares the click's country_code with the conversion's."""
    for query in ("country=de", "country={country}", ""):
        response = await client.get(f"/click?offer_id=o2&publisher_id=p&format=json&{query}")
        assert response.status_code == 200
    given, macro, absent = publisher.decoded("clicks.raw")
    assert given["country_code"] == "DE" and "country" not in given["extra"]
    assert macro["country_code"] is None and macro["extra"]["country"] == "{country}"
    assert absent["country_code"] is None


GAID = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"


async def test_an_impression_is_recorded_under_its_device_key(
    client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    response = await client.get(
        f"/impression?offer_id=o1&publisher_id=p1&campaign_id=c&sub2=s2&impression_id=imp-1&gaid={GAID}"
        "&country=fr&placement=top",
        headers={"user-agent": "UA/1"},
    )
    assert response.status_code == 200
    assert response.json() == {"status": "recorded", "impression_id": "imp-1"}
    [(topic, key, _, headers)] = publisher.sent
    assert topic == "impressions.raw" and key == f"gaid:{GAID.lower()}".encode()
    assert dict(headers)["schema"] == b"impression"
    [impression] = publisher.decoded("impressions.raw")
    assert (impression["offer_id"], impression["campaign_id"], impression["sub2"]) == ("o1", "c", "s2")
    assert impression["gaid"] == GAID.lower() and impression["idfa"] is None
    assert (impression["country_code"], impression["extra"]) == ("FR", {"placement": "top"})
    assert (impression["ip"], impression["user_agent"]) == ("127.0.0.1", "UA/1")
    issued = await client.get(f"/impression?offer_id=o1&publisher_id=p1&idfa={GAID}")
    assert issued.status_code == 200 and len(issued.json()["impression_id"]) >= 22
    assert publisher.sent[-1][1] == f"idfa:{GAID.lower()}".encode()


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("offer_id=o1&publisher_id=p1", 400, "missing_device_id"),
        ("offer_id=o1&publisher_id=p1&gaid=not-a-uuid", 400, "bad_device_id"),
        ("offer_id=o1&publisher_id=p1&idfa=00000000-0000-0000-0000-000000000000", 400, "bad_device_id"),
        (f"offer_id=o1&publisher_id=p1&gaid={GAID}&impression_id=a%20b", 400, "bad_impression_id"),
        (f"publisher_id=p1&gaid={GAID}", 400, "missing_offer_id"),
        (f"offer_id=nope&publisher_id=p1&gaid={GAID}", 404, "unknown_offer"),
        (f"offer_id=o1&publisher_id=p1&gaid={GAID}&sub1=a%0Ab", 400, "bad_value"),
        (f"offer_id=o1&publisher_id=p1&gaid={GAID}&sub1={'x' * 1025}", 400, "value_too_long"),
        (f"offer_id=o1&offer_id=o2&publisher_id=p1&gaid={GAID}", 400, "repeated_parameter"),
        ("&".join(f"p{i}=1" for i in range(201)), 400, "too_many_parameters"),
        ("offer_id=%ff", 400, "invalid_encoding"),
    ],
)
async def test_every_impression_refusal_is_a_4xx_kept_on_the_rejected_topic(
    client: httpx.AsyncClient, publisher: RecordingPublisher, query: str, status: int, reason: str
) -> None:
    response = await client.get(f"/impression?{query}")
    assert (response.status_code, response.json()["reason"]) == (status, reason)
    assert publisher.decoded("impressions.raw") == []
    [kept] = publisher.decoded("postbacks.rejected")
    assert (kept["reason"], kept["http_status"], kept["path"]) == (reason, status, "/impression")
    assert kept["request_id"] == response.json()["request_id"]


async def test_an_impression_is_get_only(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/impression?offer_id=o1&publisher_id=p1&gaid={GAID}")
    assert response.status_code == 405 and response.headers["allow"] == "GET"


async def test_routes_methods_health_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    assert (await client.delete("/postback")).status_code == 405
    assert (await client.post("/click")).status_code == 405
    assert (await client.get("/healthz")).json() == {"status": "ok", "kafka": True}
    await client.get(f"/postback?clickid=m1&token={TOKEN}")
    text = (await client.get("/metrics")).text
    assert 'postbacks_ingest_requests_total{route="postback",status="200"}' in text


_hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["NaN", "1e309", "-1", "%zz", "%", "\r\nX: y", "[" * 50, "{}", "0x10", "\uff19\uff19"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "clickid",
                    "payout",
                    "revenue",
                    "currency",
                    "event_time",
                    "event_value",
                    "status",
                    "country_code",
                    "is_retargeting",
                    "sub1",
                    "token",
                ]
            )
            | _hostile_text,
            _hostile_text,
        ),
        max_size=8,
    ),
    raw=st.binary(max_size=64),
)
async def test_no_input_gets_a_500(params: list[tuple[str, str]], raw: bytes) -> None:
    publisher = RecordingPublisher()
    app = IngestApp(Settings(), SOURCES, CATALOG, publisher)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as client:
        for response in (
            await client.get("/postback", params=[*params, ("token", TOKEN)]),
            await client.post(
                "/postback", content=raw, headers={"content-type": "application/x-www-form-urlencoded"}
            ),
            await client.post("/postback", content=raw, headers={"content-type": "application/json"}),
            await client.get("/impression", params=[*params, ("offer_id", "o1"), ("gaid", "x")]),
        ):
            assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
            assert response.json()["status"] in {"accepted", "rejected", "recorded"}
    # Every refusal was kept on the rejected topic, every acceptance on the raw one.
    assert len(publisher.sent) == 4


async def test_a_source_over_its_rate_limit_gets_429_with_retry_after(publisher: RecordingPublisher) -> None:
    now = [1000.0]
    sources = parse_sources(
        {
            "sources": {
                "default": {"auth": "token", "tokens": [TOKEN], "rate_limit_per_s": 2, "rate_limit_burst": 3},
                "other": {"auth": "token", "tokens": [TOKEN]},
            }
        }
    )
    app = IngestApp(Settings(), sources, CATALOG, publisher, clock=lambda: now[0])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
    params = {"clickid": "c1", "token": TOKEN}
    statuses = [(await client.get("/postback", params=params)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = await client.get("/postback", params=params)
    assert limited.json()["reason"] == "rate_limited" and limited.headers["retry-after"] == "1"
    assert (await client.get("/postback/other", params=params)).status_code == 200  # its own budget
    now[0] += 0.5  # one token back at 2/s
    assert (await client.get("/postback", params=params)).status_code == 200
    assert len(publisher.decoded("postbacks.raw")) == 5 and publisher.decoded("postbacks.rejected") == []


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_is_kept(
    publisher: RecordingPublisher,
) -> None:
    app = IngestApp(Settings(body_timeout_s=0.2), SOURCES, CATALOG, publisher)
    chunks = [
        {"type": "http.request", "body": b"clickid=c9&tok", "more_body": True},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(3600)  # the sender stops sending, the connection stays open
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/postback",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "client": ("127.0.0.1", 5000),
    }
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["reason"] == "request_timeout"
    [rejected] = publisher.decoded("postbacks.rejected")
    assert rejected["reason"] == "request_timeout" and rejected["http_status"] == 408
