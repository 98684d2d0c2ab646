"""Token, HMAC and IP checks: forged, replayed, missing and wrong-source credentials are refused."""

from __future__ import annotations

import ipaddress

import pytest

from ingest.auth import HmacAuth, TokenAuth, check_ip_allowed, client_ip, sign
from ingest.parsing import Refusal

SECRET = "k" * 32
NOW = 1_763_900_000.0


def refusal(fn: object, *args: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        fn(*args)  # type: ignore[operator]
    return caught.value


def test_token_accepts_any_configured_token_during_rotation() -> None:
    auth = TokenAuth("token", ("old-token-0123456789", "new-token-0123456789"))
    auth.check({"token": "old-token-0123456789"})
    auth.check({"token": "new-token-0123456789"})


def test_token_missing_is_401_and_wrong_is_403() -> None:
    auth = TokenAuth("token", ("right-token-0123456",))
    assert (r := refusal(auth.check, {})).reason == "auth_missing" and r.status == 401
    assert (
        r := refusal(auth.check, {"token": "right-token-012345X"})
    ).reason == "auth_failed" and r.status == 403
    # A prefix of the right token is not the right token.
    assert refusal(auth.check, {"token": "right-token"}).reason == "auth_failed"


def test_token_of_another_source_does_not_open_this_one() -> None:
    mine, theirs = TokenAuth("token", ("mine-0123456789abcd",)), TokenAuth("token", ("theirs-0123456789abc",))
    theirs.check({"token": "theirs-0123456789abc"})
    assert refusal(mine.check, {"token": "theirs-0123456789abc"}).reason == "auth_failed"


def _signed(payload: bytes, stamp: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "x-signature": "sha256=" + sign(secret, str(stamp).encode() + b"." + payload),
        "x-timestamp": str(stamp),
    }


def test_hmac_valid_signature_over_timestamp_and_payload() -> None:
    auth = HmacAuth((SECRET,))
    auth.check(_signed(b"clickid=a&payout=1", int(NOW)), b"clickid=a&payout=1", NOW)


def test_hmac_tampered_payload_wrong_secret_and_missing_headers() -> None:
    auth = HmacAuth((SECRET,))
    headers = _signed(b"clickid=a&payout=1", int(NOW))
    assert refusal(auth.check, headers, b"clickid=a&payout=100", NOW).reason == "auth_failed"
    assert refusal(auth.check, _signed(b"x", int(NOW), "z" * 32), b"x", NOW).reason == "auth_failed"
    assert refusal(auth.check, {}, b"x", NOW).reason == "auth_missing"
    assert refusal(auth.check, {**headers, "x-timestamp": "soon"}, b"x", NOW).reason == "auth_failed"


def test_hmac_replay_outside_window_is_refused() -> None:
    auth = HmacAuth((SECRET,), max_age_s=300)
    old = int(NOW) - 301
    assert refusal(auth.check, _signed(b"p", old), b"p", NOW).reason == "signature_expired"
    # Moving the timestamp forward breaks the signature: the stamp is signed.
    replay = {**_signed(b"p", old), "x-timestamp": str(int(NOW))}
    assert refusal(auth.check, replay, b"p", NOW).reason == "auth_failed"


NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]


def test_ip_allow_list() -> None:
    check_ip_allowed("10.1.2.3", NETS)
    check_ip_allowed("2001:db8::1", NETS)
    check_ip_allowed("203.0.113.1", [])  # no list: open
    assert refusal(check_ip_allowed, "203.0.113.1", NETS).status == 403


def test_forwarded_for_only_believed_from_trusted_proxies() -> None:
    proxies = [ipaddress.ip_network("192.0.2.0/24")]
    # From a trusted proxy: the right-most untrusted hop is the client.
    assert client_ip("192.0.2.10", "203.0.113.5, 192.0.2.11", proxies) == "203.0.113.5"
    # A client forging a left-most entry does not win.
    assert client_ip("192.0.2.10", "10.0.0.1, 198.51.100.2", proxies) == "198.51.100.2"
    # From anyone else the header is ignored.
    assert client_ip("198.51.100.9", "10.0.0.1", proxies) == "198.51.100.9"
    # Garbage in the header falls back to the peer.
    assert client_ip("192.0.2.10", "not-an-ip", proxies) == "192.0.2.10"
