"""What the publisher is paid for a conversion, by the offer's payout rule."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from postbacks.catalog import PayoutRule
from stream.rules.fx import QUANTUM, to_usd


def payout_for(
    rule: PayoutRule,
    event: str,
    sender_payout: Decimal | None,
    sender_currency: str | None,
    revenue_usd: Decimal,
    rates: Mapping[str, Decimal],
) -> tuple[Decimal | None, str | None, Decimal] | None:
    """(payout, its currency, payout in USD); None when a needed rate is missing."""
    if rule.kind == "cpa":
        amount = rule.per_event.get(event, rule.amount)
        if amount is None:
            return None, None, Decimal(0).quantize(QUANTUM)
        converted = to_usd(amount, rule.currency, rates)
        return None if converted is None else (amount, rule.currency, converted[0])
    if rule.kind == "revshare":
        assert rule.percent is not None
        usd = (revenue_usd * rule.percent / 100).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
        return usd, "USD", usd
    if sender_payout is None:
        return None, None, Decimal(0).quantize(QUANTUM)
    converted = to_usd(sender_payout, sender_currency or "USD", rates)
    return None if converted is None else (sender_payout, sender_currency or "USD", converted[0])
