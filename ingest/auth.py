"""Who may send postbacks: per-source token or HMAC signature, and IP allow-lists.

Pure checks over the parts of a request they need, so forged, replayed and
wrong-source credentials are unit-tested without a server. Secrets are compared in
constant time (`hmac.compare_digest`) so response timing does not leak them.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ingest.parsing import Refusal
from postbacks.conventions import sign as sign

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """A shared token in a request parameter (several at once during a rotation)."""

    param: str
    tokens: tuple[str, ...]

    def check(self, params: Mapping[str, str]) -> None:
        given = params.get(self.param)
        if not given:
            raise Refusal("auth_missing", f"token parameter {self.param!r} is missing", self.param, 401)
        given_bytes = given.encode()
        # Compare against every token, no early exit, so timing does not reveal which one came close.
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(given_bytes, token.encode())
        if not matched:
            raise Refusal("auth_failed", "token does not match", self.param, 403)


@dataclass(frozen=True, slots=True)
class HmacAuth:
    """HMAC-SHA256 over `"{timestamp}." + payload`, payload the raw query (GET) or raw body (POST).

    The timestamp is inside the signature and must be within `max_age_s` of now, so a
    captured request cannot be replayed later.
    """

    secrets: tuple[str, ...]
    header: str = "x-signature"
    timestamp_header: str = "x-timestamp"
    max_age_s: int = 300

    def check(self, headers: Mapping[str, str], payload: bytes, now_s: float) -> None:
        signature = headers.get(self.header, "").strip().lower().removeprefix("sha256=")
        stamp = headers.get(self.timestamp_header, "").strip()
        if not signature or not stamp:
            raise Refusal(
                "auth_missing", f"{self.header} and {self.timestamp_header} headers are required", None, 401
            )
        try:
            stamp_s = int(stamp)
        except ValueError as exc:
            raise Refusal("auth_failed", "timestamp must be unix seconds", None, 401) from exc
        if abs(now_s - stamp_s) > self.max_age_s:
            raise Refusal("signature_expired", f"timestamp outside ±{self.max_age_s}s of now", None, 401)
        message = stamp.encode() + b"." + payload
        matched = False
        for secret in self.secrets:
            expected = sign(secret, message)
            matched |= hmac.compare_digest(expected.encode(), signature.encode())
        if not matched:
            raise Refusal("auth_failed", "signature does not match", None, 403)


@dataclass(frozen=True, slots=True)
class NoAuth:
    """Explicitly open source (e.g. behind a private network). Must be configured on purpose."""


Auth = TokenAuth | HmacAuth | NoAuth


def client_ip(peer: str, forwarded_for: str | None, trusted_proxies: Sequence[IPNetwork]) -> str:
    """The sender's address: X-Forwarded-For is believed only when the peer is a trusted proxy.

    Walk the chain from the right, skipping trusted proxies; the first untrusted hop is
    the client. A forged left-most entry cannot win that way.
    """
    if not forwarded_for or not _in_any(peer, trusted_proxies):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _in_any(hop, trusted_proxies):
            return hop if _is_ip(hop) else peer
    return peer


def check_ip_allowed(ip: str, allow: Sequence[IPNetwork]) -> None:
    if allow and not _in_any(ip, allow):
        raise Refusal("ip_not_allowed", "sender address is not on the source's allow-list", None, 403)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _in_any(ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)
