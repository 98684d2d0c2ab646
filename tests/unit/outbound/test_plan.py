"""Which delivery a conversion version gets: eligibility, the request, its idempotency key, its signature."""

from __future__ import annotations

import tomllib
from urllib.parse import urlsplit

import pytest

from ingest.auth import HmacAuth
from outbound.config import parse_publishers
from outbound.plan import IDEMPOTENCY_HEADER, idempotency_key, plan, redact, signature_headers
from tests.unit.outbound.conftest import make_conversion

PUBLISHERS = parse_publishers(
    tomllib.loads(
        """
[publishers.p1]
url = "https://pub.example/pb?cid={clickid}&p={payout}&s={status}&token=pub-secret"
statuses = ["approved", "rejected"]
hmac_secret = "0123456789abcdef-secret"

[publishers.p2]
url = "https://p2.example/pb"
method = "POST"
body = "cid={clickid}&tx={txid}"
"""
    )
)


def test_keys_are_stable_and_name_exactly_one_delivery() -> None:
    key = idempotency_key("conv-1", 42, "p1")
    assert key == idempotency_key("conv-1", 42, "p1") and len(key) == 32
    assert len({key, idempotency_key("conv-1", 43, "p1"), idempotency_key("conv-1", 42, "p2"),
                idempotency_key("conv-2", 42, "p1")}) == 4  # fmt: skip
    # The parts are separated, so shifting a character between them gives another key.
    assert idempotency_key("conv-1", 42, "p1") != idempotency_key("conv-14", 2, "p1")


def test_only_configured_publishers_and_wanted_statuses_get_a_delivery() -> None:
    assert plan(make_conversion(publisher_id="nobody"), PUBLISHERS) is None
    assert plan(make_conversion(status="pending"), PUBLISHERS) is None
    assert plan(make_conversion(publisher_id="p2", status="rejected"), PUBLISHERS) is None
    approved = plan(make_conversion(), PUBLISHERS)
    reversal = plan(make_conversion(status="rejected", version=50), PUBLISHERS)  # a later version
    assert approved is not None and reversal is not None
    assert reversal.key != approved.key  # each version is passed on once


def test_get_request_carries_the_key_and_a_signature_the_ingest_accepts() -> None:
    delivery = plan(make_conversion(), PUBLISHERS)
    assert delivery is not None
    request = delivery.request
    assert (request.method, request.body) == ("GET", None)
    assert request.url == "https://pub.example/pb?cid=PUB-77&p=1.5&s=approved&token=pub-secret"
    assert dict(request.headers)[IDEMPOTENCY_HEADER] == delivery.key == idempotency_key("conv-1", 42, "p1")
    signed = dict(signature_headers(delivery.publisher, request, 1_763_900_000))
    assert signed["x-timestamp"] == "1763900000" and signed["x-signature"].startswith("sha256=")
    # Our own ingest verifies it: a sub-network running this pipeline can receive our postbacks as-is.
    HmacAuth(secrets=("0123456789abcdef-secret",)).check(signed, request.payload(), 1_763_900_010)
    assert request.payload() == urlsplit(request.url).query.encode()


def test_post_request_has_a_form_body() -> None:
    delivery = plan(make_conversion(publisher_id="p2", pub_click_id="a&b"), PUBLISHERS)
    assert delivery is not None
    assert delivery.request.body == b"cid=a%26b&tx=T1"
    assert ("Content-Type", "application/x-www-form-urlencoded") in delivery.request.headers
    assert signature_headers(delivery.publisher, delivery.request, 0) == ()  # no secret, no signature


def test_the_request_is_a_function_of_the_conversion_alone() -> None:
    first, again = plan(make_conversion(), PUBLISHERS), plan(make_conversion(), PUBLISHERS)
    assert first == again


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://p.example/pb?cid=1&token=abc&api_key=k",
            "https://p.example/pb?cid=1&token=%2A%2A%2A&api_key=%2A%2A%2A",
        ),
        ("https://user:pw@p.example/pb?x=1", "https://p.example/pb?x=1"),
    ],
)
def test_redacted_urls_keep_no_secrets(url: str, shown: str) -> None:
    assert redact(url) == shown
